/**
 * Search: the `Search` service and its error (Search.ts), the Search-R1
 * retrieval protocol and passage format (protocol.ts), the HTTP client
 * (client.ts) and server (server.ts). See docs/search.md.
 */
export {
  checkArguments,
  Hit,
  isTransient,
  layer,
  make,
  Search,
  SearchError,
  SearchErrorReason,
  type SearchShape
} from "./Search.ts"
export {
  decodeRequest,
  decodeResponse,
  describeIssue,
  describeJson,
  encodeRequest,
  encodeResponse,
  ErrorBody,
  formatContents,
  formatPassages,
  formatPath,
  joinContents,
  RetrievedDocument,
  RetrieveRequest,
  RetrieveResponse,
  ScoredDocument,
  splitContents
} from "./protocol.ts"
export {
  BODY_EXCERPT,
  causeDetail,
  layerRemote,
  makeRemote,
  type RemoteOptions,
  type ResolvedRemoteOptions,
  resolveOptions
} from "./client.ts"
export {
  handler,
  RETRIEVE_PATH,
  serve,
  type ServeOptions,
  type ServerAddress,
  SearchServerError,
  SearchServerErrorReason
} from "./server.ts"
export { buildIndex, type BuildIndexOptions, type BuildIndexReport, type IndexSearch, layerIndex, openIndex } from "./bm25.ts"
