//! The protobuf codec of every Carewoven gRPC service and client: prost's, except that a
//! message that cannot be decoded is INVALID_ARGUMENT naming the message type (the caller
//! sent something that is not the request it called with), not INTERNAL as tonic-prost
//! answers. Generated code uses it through `codec_path` (`build.rs`).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

/// [`ProstCodec`] with decode errors mapped to INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct CarewovenCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for CarewovenCodec<T, U> {
    fn default() -> Self {
        CarewovenCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for CarewovenCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CarewovenDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CarewovenDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// Decodes `U`; a malformed message is INVALID_ARGUMENT naming `U`.
#[derive(Debug, Clone)]
pub struct CarewovenDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for CarewovenDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|e| malformed::<U>(e.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// The message type's name without its Rust module path (`RegisterPersonRequest`).
pub fn message_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}

/// INVALID_ARGUMENT: the body is not a valid `U`.
fn malformed<U>(why: &str) -> Status {
    let name = message_name::<U>();
    let description = format!("is not a valid protobuf {name}: {why}");
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{name}: {description}"),
        ErrorDetails::with_bad_request_violation(name, description.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_message_is_invalid_argument_naming_its_type() {
        let status = malformed::<crate::v1::RegisterPersonRequest>("invalid wire type");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("RegisterPersonRequest: "),
            "{}",
            status.message()
        );
        let details = status.get_error_details();
        let violations = details.bad_request().map(|b| b.field_violations.clone());
        assert_eq!(
            violations.and_then(|v| v.first().map(|f| f.field.clone())),
            Some("RegisterPersonRequest".to_owned())
        );
    }
}
