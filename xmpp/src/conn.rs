//! A framed XMPP connection over TCP that can turn into TLS mid-stream (STARTTLS) or start
//! as TLS (XEP-0368), shared by every stream the proxy and gateway run.
//!
//! [`XmppConn::next_frame`] is cancel-safe (all state lives in the struct), so drivers can
//! `select!` on it beside timers and control channels and write between polls.

use crate::framer::{Frame, FramerLimits, FramingError, StanzaFramer};
use bytes::{BufMut, BytesMut};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use tokio_util::codec::Decoder;

/// Bytes read from the socket per call: the framer consumes them before the next read, so
/// this bounds the read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// The byte stream under an XMPP stream.
pub enum Transport {
    Plain(TcpStream),
    ServerTls(Box<server::TlsStream<TcpStream>>),
    ClientTls(Box<client::TlsStream<TcpStream>>),
}

impl Transport {
    /// The peer's certificate chain, if TLS carried one.
    pub fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        let certs = match self {
            Transport::Plain(_) => None,
            Transport::ServerTls(s) => s.get_ref().1.peer_certificates(),
            Transport::ClientTls(s) => s.get_ref().1.peer_certificates(),
        };
        certs
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain(_))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Transport::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Transport::ServerTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Transport::ClientTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Why a connection step failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Framing(#[from] FramingError),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// Bytes of queued stanzas a relay writes in one go at most (one TLS record and one syscall
/// per burst instead of one per stanza).
pub const BATCH_BYTES: usize = 64 * 1024;

/// A framed XMPP stream.
pub struct XmppConn {
    transport: Option<Transport>,
    framer: StanzaFramer,
    read_buf: BytesMut,
    /// Bytes received, for metrics.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl XmppConn {
    pub fn new(transport: Transport, limits: FramerLimits) -> Self {
        Self {
            transport: Some(transport),
            framer: StanzaFramer::new(limits),
            read_buf: BytesMut::with_capacity(1024),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    fn transport(&mut self) -> io::Result<&mut Transport> {
        self.transport.as_mut().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection failed during a TLS upgrade",
            )
        })
    }

    pub fn framer_mut(&mut self) -> &mut StanzaFramer {
        &mut self.framer
    }

    /// The next frame; `Ok(None)` when the peer closed the connection cleanly.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            self.read_buf.reserve(READ_CHUNK);
            let transport = self.transport.as_mut().ok_or_else(not_connected)?;
            let mut limited = (&mut self.read_buf).limit(READ_CHUNK);
            let n = transport.read_buf(&mut limited).await?;
            if n == 0 {
                return Ok(self.framer.decode_eof(&mut self.read_buf)?);
            }
            // Wire-level debugging of interop problems (RUST_LOG=xmppfed_xmpp::conn=trace).
            // Never on by default: after authentication these bytes are users' messages.
            tracing::trace!(bytes = %String::from_utf8_lossy(&self.read_buf[self.read_buf.len() - n..]), "received");
            self.bytes_in += n as u64;
        }
    }

    /// The next frame among the bytes already read, without reading; `Ok(None)` when they
    /// hold no complete one. Lets a driver handle a burst without polling its other events
    /// per stanza.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        Ok(self.framer.decode(&mut self.read_buf)?)
    }

    /// Writes and flushes.
    pub async fn send(&mut self, data: &str) -> io::Result<()> {
        tracing::trace!(bytes = %data, "sending");
        let transport = self.transport()?;
        transport.write_all(data.as_bytes()).await?;
        transport.flush().await?;
        self.bytes_out += data.len() as u64;
        Ok(())
    }

    /// Sends a stream error (with its text) and closes the stream.
    pub async fn close_with(&mut self, error: &crate::StreamError) -> io::Result<()> {
        let mut out = error.to_element().to_xml_in(crate::ns::SERVER);
        out.push_str(crate::stream::CLOSE_STREAM);
        self.send(&out).await
    }

    /// Half-closes after a final write; errors are irrelevant at this point.
    pub async fn shutdown(&mut self) {
        if let Ok(t) = self.transport() {
            let _ = t.shutdown().await;
        }
    }

    /// Whatever the peer sent after the element that starts TLS must not survive the
    /// upgrade (it would be read as if it came through TLS). Whitespace is tolerated, as real
    /// peers send it; anything else is an injection attempt.
    fn take_plaintext_leftover(&mut self) -> Result<(), ConnError> {
        let leftover = std::mem::take(&mut self.read_buf);
        if leftover.iter().all(|b| b.is_ascii_whitespace()) && !self.framer.in_element() {
            Ok(())
        } else {
            Err(ConnError::Protocol(format!(
                "{} bytes of plaintext followed the TLS negotiation element: refusing to carry them into TLS",
                leftover.len()
            )))
        }
    }

    /// STARTTLS, receiving side: after `<proceed/>` was written.
    pub async fn upgrade_server(&mut self, acceptor: &TlsAcceptor) -> Result<(), ConnError> {
        self.take_plaintext_leftover()?;
        let Some(Transport::Plain(tcp)) = self.transport.take() else {
            return Err(ConnError::Protocol("TLS is already established".into()));
        };
        let tls = acceptor.accept(tcp).await.map_err(ConnError::Tls)?;
        self.transport = Some(Transport::ServerTls(Box::new(tls)));
        Ok(())
    }

    /// STARTTLS, initiating side: after `<proceed/>` was read.
    pub async fn upgrade_client(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> Result<(), ConnError> {
        self.take_plaintext_leftover()?;
        let Some(Transport::Plain(tcp)) = self.transport.take() else {
            return Err(ConnError::Protocol("TLS is already established".into()));
        };
        let tls = connect_tls(tcp, config, domain).await?;
        self.transport = Some(Transport::ClientTls(Box::new(tls)));
        Ok(())
    }

    pub fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        self.transport
            .as_ref()
            .map(Transport::peer_chain)
            .unwrap_or_default()
    }
}

/// A TLS client handshake with SNI = `domain` (XEP-0368: SNI is the XMPP domain).
pub async fn connect_tls(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    domain: &str,
) -> Result<client::TlsStream<TcpStream>, ConnError> {
    let name = ServerName::try_from(domain.to_string()).map_err(|_| {
        ConnError::Protocol(format!("{domain} cannot be used as a TLS server name"))
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(ConnError::Tls)
}

/// Opens a server-to-server connection to `addr`: TCP without Nagle (stanzas are small and
/// latency matters), then at once TLS with SNI = `domain` when `direct_tls` gives a client
/// configuration (XEP-0368). Each of the two steps is bounded by `step_timeout`; the stream
/// starts under the pre-authentication limits.
pub async fn connect_s2s(
    addr: std::net::SocketAddr,
    direct_tls: Option<Arc<rustls::ClientConfig>>,
    domain: &str,
    step_timeout: std::time::Duration,
) -> Result<XmppConn, String> {
    use tokio::time::timeout;
    let tcp = timeout(step_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| format!("connection failed: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let transport = match direct_tls {
        Some(config) => {
            let tls = timeout(step_timeout, connect_tls(tcp, config, domain))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Transport::ClientTls(Box::new(tls))
        }
        None => Transport::Plain(tcp),
    };
    Ok(XmppConn::new(transport, FramerLimits::PRE_AUTH))
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection failed during a TLS upgrade",
    )
}
