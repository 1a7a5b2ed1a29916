//! authd wire protocol (work in progress).
