//! Message bodies by sender: terminal, payer device and operator requests, replies, pushes.

pub mod device;
pub mod operator;
pub mod push;
pub mod reply;
pub mod terminal;
