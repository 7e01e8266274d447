//! What the server does with what it receives.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Chat,
    Echo,
    Sink,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Echo => "echo",
            Mode::Sink => "sink",
        }
    }
}
