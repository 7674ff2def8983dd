//! Arbitrary bytes, cut at arbitrary places, into the stanza framer: it must never panic, and
//! what it leaves in its input buffer (one unfinished token) stays within the stanza limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use xmppfed_xmpp::framer::{FramerLimits, StanzaFramer};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut).max(1);
    let limits = if cut % 2 == 0 {
        FramerLimits::PRE_AUTH
    } else {
        FramerLimits::authenticated(4096)
    };
    let mut framer = StanzaFramer::new(limits);
    let mut buf = BytesMut::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    // Every failure maps to a stream error with a reason.
                    assert!(!e.stream_error().text.is_empty());
                    return;
                }
            }
        }
        let bound = chunk + limits.max_stanza_bytes.max(4 * limits.max_token_len.max(4096));
        assert!(buf.len() <= bound, "the framer kept {} bytes", buf.len());
    }
    let _ = framer.decode_eof(&mut buf);
});
