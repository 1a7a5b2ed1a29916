//! authd engine (work in progress: see the crate doc once the books land).
pub mod reason;
