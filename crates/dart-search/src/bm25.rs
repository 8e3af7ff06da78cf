//! BM25 with chosen k1 and b over tantivy's postings and field norms.
//!
//! tantivy's own BM25 fixes k1 = 1.2, b = 0.75; Search-R1's retriever is
//! pyserini (Lucene) with k1 = 0.9, b = 0.4, so the scoring of a term is
//! written here, as a tantivy `Query`: for a document with term frequency tf
//! and length dl (tantivy's field norm, lossily coded like Lucene's),
//!
//!   score = boost * idf * (k1 + 1) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
//!   idf   = ln(1 + (N - df + 0.5) / (df + 0.5))
//!
//! as Lucene's BM25Similarity (whose (k1 + 1) factor it dropped in 8.0 does
//! not change the ranking). A query is a BooleanQuery of these, one Should
//! clause per distinct term with the term's count in the query as boost, as
//! pyserini's bag-of-words query generator does.
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{Bm25StatisticsProvider, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, Term};

/// The BM25 parameters; pyserini's defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 0.9, b: 0.4 }
    }
}

/// One query term, scored by BM25 with `params`.
#[derive(Debug, Clone)]
pub struct Bm25TermQuery {
    pub term: Term,
    pub params: Bm25Params,
    pub boost: Score,
}

impl Query for Bm25TermQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let stats: &dyn Bm25StatisticsProvider = match scoring {
            EnableScoring::Enabled { statistics_provider, .. } => statistics_provider,
            EnableScoring::Disabled { .. } => return Err(TantivyError::InvalidArgument("BM25 needs scoring enabled".into())),
        };
        let field = self.term.field();
        let n = stats.total_num_docs()? as f32;
        let df = stats.doc_freq(&self.term)? as f32;
        let tokens = stats.total_num_tokens(field)? as f32;
        let avgdl = if n > 0.0 { (tokens / n).max(f32::MIN_POSITIVE) } else { 1.0 };
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        Ok(Box::new(Bm25TermWeight { term: self.term.clone(), field, weight: self.boost * idf * (self.params.k1 + 1.0), avgdl, params: self.params }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        visitor(&self.term, false);
    }
}

struct Bm25TermWeight {
    term: Term,
    field: Field,
    /// boost * idf * (k1 + 1)
    weight: Score,
    avgdl: f32,
    params: Bm25Params,
}

impl Weight for Bm25TermWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inverted = reader.inverted_index(self.field)?;
        match inverted.read_postings(&self.term, IndexRecordOption::WithFreqs)? {
            None => Ok(Box::new(EmptyScorer)),
            Some(postings) => Ok(Box::new(Bm25Scorer {
                postings,
                norms: reader.get_fieldnorms_reader(self.field)?,
                weight: self.weight * boost,
                params: self.params,
                avgdl: self.avgdl,
                length_part: [f32::NAN; 256],
            })),
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut s = self.scorer(reader, 1.0)?;
        if s.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!("document {doc} does not match {:?}", self.term)));
        }
        Ok(Explanation::new("BM25 (k1, b)", s.score()))
    }
}

struct Bm25Scorer {
    postings: SegmentPostings,
    norms: FieldNormReader,
    weight: Score,
    params: Bm25Params,
    avgdl: f32,
    /// k1 * (1 - b + b * dl / avgdl) per field-norm code (256 codes), filled
    /// as codes are met.
    length_part: [f32; 256],
}

impl DocSet for Bm25Scorer {
    fn advance(&mut self) -> DocId {
        self.postings.advance()
    }
    fn seek(&mut self, target: DocId) -> DocId {
        self.postings.seek(target)
    }
    fn doc(&self) -> DocId {
        self.postings.doc()
    }
    fn size_hint(&self) -> u32 {
        self.postings.size_hint()
    }
}

impl Scorer for Bm25Scorer {
    fn score(&mut self) -> Score {
        let doc = self.postings.doc();
        let code = self.norms.fieldnorm_id(doc) as usize;
        let mut part = self.length_part[code];
        if part.is_nan() {
            let dl = self.norms.fieldnorm(doc) as f32;
            part = self.params.k1 * (1.0 - self.params.b + self.params.b * dl / self.avgdl);
            self.length_part[code] = part;
        }
        let tf = self.postings.term_freq() as f32;
        self.weight * tf / (tf + part)
    }
}
