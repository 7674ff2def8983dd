//! The flags the operator gives the gateway container are the ones `xmppfed-gateway` accepts.

#[test]
fn the_operator_built_flags_parse() {
    let args = xmppfed_testkit::operator_args::golden_container_args("gateway");
    xmppfed_testkit::operator_args::assert_flags_accepted(
        env!("CARGO_BIN_EXE_xmppfed-gateway"),
        &args,
    );
}
