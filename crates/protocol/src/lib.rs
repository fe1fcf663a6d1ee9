//! The Kafka wire format as Sediment speaks it.
//!
//! Message encoding and decoding is the `kafka-protocol` crate's job; this crate owns what sits
//! around it: length-prefixed framing with an enforced size limit, the table of API versions the
//! broker implements (and therefore advertises), validation of v2 record batches as producers
//! send them, and a small pipelining client used by the CLI and the benchmark.

pub mod alloc;
pub mod batch;
pub mod client;
pub mod decompress;
pub mod frame;
pub mod records;
pub mod versions;

pub use kafka_protocol;
