//! Generated protobuf and gRPC types for `carewoven.v1`, and the one place they are converted
//! to and from domain types. Domain types never derive prost; wire types never leave here
//! unconverted.

#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("carewoven.v1");
}

/// Encoded `FileDescriptorSet` for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carewoven_descriptor.bin"));

pub mod codec;
pub mod convert;

/// Largest gRPC request any Carewoven service decodes (every service sets it on every
/// API): larger ones are refused by tonic before any work is done.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
