//! Stream framing throughput on one core: rxml's two parsers alone (the floor of what a
//! strict parse costs) against `StanzaFramer` (parse, limits, namespace checks, element tree).
//!
//! `cargo bench -p xmppfed-xmpp --bench framing` (`BENCH_STANZAS=n`, default 200,000;
//! `BENCH_ONLY=framer` skips the rxml baselines, e.g. under `perf record`).

use bytes::BytesMut;
use rxml::parser::{Parse, RawParser};
use rxml::{Parser, error::EndOrError};
use std::time::Instant;
use tokio_util::codec::Decoder;
use xmppfed_xmpp::framer::{Frame, FramerLimits, StanzaFramer};

/// ~300 bytes on the wire, like a typical chat message with a receipt request.
fn stanza(i: usize) -> String {
    format!(
        "<message from='bob@partner.example/phone' to='alice@example.com' type='chat' id='msg-{i:08}'><body>{}</body><request xmlns='urn:xmpp:receipts'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "x".repeat(110)
    )
}

fn input(n: usize) -> String {
    let mut input = String::from(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' from='partner.example' version='1.0'>",
    );
    for i in 0..n {
        input.push_str(&stanza(i));
    }
    input
}

fn report(what: &str, n: usize, bytes: usize, secs: f64) {
    println!(
        "{what:<34} {:>9.0} stanzas/s {:>7.1} MB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// Best of `runs`, in seconds.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn drain<P: Parse>(parser: &mut P, input: &str) -> usize {
    let mut events = 0;
    for chunk in input.as_bytes().chunks(16 * 1024) {
        let mut rest = chunk;
        loop {
            match parser.parse(&mut rest, false) {
                Ok(Some(_)) => events += 1,
                Ok(None) | Err(EndOrError::NeedMoreData) => break,
                Err(EndOrError::Error(e)) => panic!("bench input rejected: {e}"),
            }
        }
    }
    events
}

fn main() {
    let n: usize = std::env::var("BENCH_STANZAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let input = input(n);
    let bytes = input.len();
    println!("{n} stanzas of ~{} B, 16 KiB reads, best of 5", bytes / n);

    if std::env::var("BENCH_ONLY").as_deref() != Ok("framer") {
        let secs = best(5, || {
            assert!(drain(&mut RawParser::new(), &input) > n);
        });
        report("rxml RawParser (no namespaces)", n, bytes, secs);
        let secs = best(5, || {
            assert!(drain(&mut Parser::new(), &input) > n);
        });
        report("rxml Parser", n, bytes, secs);
    }
    for verbatim in [false, true] {
        let secs = best(5, || {
            let mut framer = StanzaFramer::new(FramerLimits::authenticated(262_144));
            if verbatim {
                framer.capture_verbatim();
            }
            let mut frames = 0usize;
            let mut buf = BytesMut::with_capacity(32 * 1024);
            for chunk in input.as_bytes().chunks(16 * 1024) {
                // What the framer left is the start of an unfinished token.
                buf.extend_from_slice(chunk);
                while let Ok(Some(frame)) = framer.decode(&mut buf) {
                    if matches!(frame, Frame::Element(_)) {
                        frames += 1;
                        if verbatim {
                            assert!(framer.take_verbatim().is_some());
                        }
                    }
                }
            }
            assert_eq!(frames, n);
        });
        let what = if verbatim {
            "StanzaFramer, keeping bytes"
        } else {
            "StanzaFramer (budget 250,000/s)"
        };
        report(what, n, bytes, secs);
    }
}
