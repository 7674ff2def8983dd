//! The flags the operator gives the proxy container are the ones `xmppfed-proxy` accepts.

#[test]
fn the_operator_built_flags_parse() {
    let args = xmppfed_testkit::operator_args::golden_container_args("proxy");
    xmppfed_testkit::operator_args::assert_flags_accepted(
        env!("CARGO_BIN_EXE_xmppfed-proxy"),
        &args,
    );
}
