//! Blocking facade.
