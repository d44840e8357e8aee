//! (being written)

/// Whether a session runs an agent or evaluates a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Agent mode.
    Agent,
    /// Evaluation mode.
    Evaluation,
}

/// A spec.
#[derive(Debug, Clone)]
pub struct EnvironmentSpec {
    /// type
    pub backend_type: String,
}

impl EnvironmentSpec {
    /// setup
    pub fn setup_commands(&self, _mode: Mode) -> Vec<String> {
        Vec::new()
    }
}
