//! Test utilities for tooz.
