//! A problem found while validating a document (a deployment form, a group's load-balancer settings): the dotted
//! field path it is at and what was expected. Validators collect every problem at once so a user fixes a file in
//! one round.

use std::fmt;

/// One problem: the field path (`check.timeout`, `lb.targets.web-1`; empty for the whole document) and what is
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted field path.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl FieldProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of one document (never empty when returned as an error), shown joined by `; `.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldProblems(pub Vec<FieldProblem>);

impl FieldProblems {
    /// Record a problem at `path`.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldProblem::new(path, message));
    }

    /// `Ok(value)` when nothing was recorded, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The field paths, in the order found (what tests and callers match on).
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.path.as_str()).collect()
    }
}

impl fmt::Display for FieldProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldProblems {}

impl From<FieldProblems> for Vec<FieldProblem> {
    fn from(p: FieldProblems) -> Self {
        p.0
    }
}
