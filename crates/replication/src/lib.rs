//! Replication between Sediment brokers (ADR 0023): what a follower fetches and how it
//! appends it ([`fetcher`]), where two replicas' logs diverge ([`epochs`]), and who is in
//! sync, what is committed and which requests are fenced ([`isr`]).
//!
//! The broker's partition object owns the state; this crate decides over it and drives the
//! follower's side of the wire. It depends on the WAL only for the types of an append's
//! outcome and on the protocol crate for the client and batch parsing.

pub mod epochs;
pub mod fetcher;
pub mod isr;

pub use epochs::EpochHistory;
pub use isr::{Progress, Role};
