//! tooz: distributed coordination.
