//! xmppfed-gateway: the internal XMPP gateway (issue 4). It will apply
//! `xmppfed_policy::CompiledPolicy::access_for` (user > domain > global) and the partner-type
//! semantics on every stanza.
