//! xmppfed-proxy: the edge XMPP server-to-server proxy (issue 3). It will load the policy
//! document with `xmppfed_policy::codec::decode` / `decode_bytes` and enforce it per domain pair.
