//! (being written)

/// Whether a session runs an agent or evaluates a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Agent mode.
    Agent,
    /// Evaluation mode.
    Evaluation,
}
