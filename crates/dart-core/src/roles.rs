//! Roles of tokens and the rule that assigns them (docs/design.md, "Roles
//! and routing"), as data: the tag token sequences that open and close a tool
//! call. The same tracker runs while decoding and when a finished trajectory
//! is re-labelled for training, so the two can never disagree.
use crate::error::{DartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Prompt (system, question): never trained.
    Prompt = 0,
    /// Model-written tokens outside tool calls.
    Reasoning = 1,
    /// Model-written tokens of a tool call, after `<search>` up to and including `</search>`.
    Action = 2,
    /// Tool output: never trained.
    Observation = 3,
}

impl Role {
    pub fn from_u8(v: u8) -> Result<Role> {
        match v {
            0 => Ok(Role::Prompt),
            1 => Ok(Role::Reasoning),
            2 => Ok(Role::Action),
            3 => Ok(Role::Observation),
            _ => Err(DartError::InvalidArgument(format!("role {v}, expected 0 (P), 1 (R), 2 (A) or 3 (O)"))),
        }
    }
}

/// The tool-call tags as token sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRules {
    pub open: Vec<i32>,
    pub close: Vec<i32>,
}

impl RoleRules {
    pub fn new(open: Vec<i32>, close: Vec<i32>) -> Result<Self> {
        if open.is_empty() || close.is_empty() {
            return Err(DartError::InvalidArgument("role rules need non-empty open and close tag token sequences".into()));
        }
        Ok(RoleRules { open, close })
    }
}

/// Which role the next model-written token has: R until the model has
/// written the open tag (which is itself R), then A up to and including the
/// close tag.
#[derive(Debug, Clone)]
pub struct RoleTracker {
    rules: RoleRules,
    state: Role,
    /// Model-written tokens since the last state change or extend.
    recent: Vec<i32>,
}

/// What a model-written token did to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    OpenedCall,
    ClosedCall,
}

impl RoleTracker {
    pub fn new(rules: RoleRules) -> Self {
        RoleTracker { rules, state: Role::Reasoning, recent: Vec::new() }
    }

    /// Role of the next model-written token.
    pub fn next_role(&self) -> Role {
        self.state
    }

    /// Records a model-written token (whose role was `next_role()`).
    pub fn push(&mut self, token: i32) -> Transition {
        self.recent.push(token);
        let tag = if self.state == Role::Reasoning { &self.rules.open } else { &self.rules.close };
        if self.recent.ends_with(tag) {
            self.recent.clear();
            if self.state == Role::Reasoning {
                self.state = Role::Action;
                Transition::OpenedCall
            } else {
                self.state = Role::Reasoning;
                Transition::ClosedCall
            }
        } else {
            Transition::None
        }
    }

    /// Tokens not written by the model break any partial tag.
    pub fn interrupt(&mut self) {
        self.recent.clear();
    }
}

/// Who put a token into a trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Prompt,
    Model,
    Tool,
}

/// Roles of a finished trajectory from who wrote each token.
pub fn assign_roles(tokens: &[i32], sources: &[Source], rules: &RoleRules) -> Result<Vec<Role>> {
    if tokens.len() != sources.len() {
        return Err(DartError::Shape(format!("sources has {} entries, expected one per token ({})", sources.len(), tokens.len())));
    }
    let mut t = RoleTracker::new(rules.clone());
    Ok(tokens
        .iter()
        .zip(sources)
        .map(|(&tok, s)| match s {
            Source::Prompt => {
                t.interrupt();
                Role::Prompt
            }
            Source::Tool => {
                t.interrupt();
                Role::Observation
            }
            Source::Model => {
                let r = t.next_role();
                t.push(tok);
                r
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_tag_is_reasoning_and_close_tag_is_action() {
        // <search> = [5, 6], </search> = [7, 6]
        let rules = RoleRules::new(vec![5, 6], vec![7, 6]).unwrap();
        let (p, m, t) = (Source::Prompt, Source::Model, Source::Tool);
        let tokens = [1, 2, 3, 5, 6, 9, 9, 7, 6, 4, 4, 3];
        let src = [p, p, m, m, m, m, m, m, m, t, t, m];
        let roles = assign_roles(&tokens, &src, &rules).unwrap();
        let (rp, rr, ra, ro) = (Role::Prompt, Role::Reasoning, Role::Action, Role::Observation);
        assert_eq!(roles, vec![rp, rp, rr, rr, rr, ra, ra, ra, ra, ro, ro, rr]);
    }
}
