//! An HTTP/2 client for `tests/http2.rs`, which includes this file with
//! `#[path]` (so the other test binaries do not build it): one connection
//! per `H2Connection`, cleartext with prior knowledge (h2c) or TLS with ALPN
//! `h2` as browsers connect, many streams on it, each started at once and
//! answered later (`H2Stream`), reset, or left when the whole connection is
//! closed. A request body is sent as the server's flow-control windows allow,
//! in the background, while the test goes on.
//!
//! The `h2` crate runs on a tokio runtime owned by the connection (one worker
//! thread, which drives the connection and every stream while the test
//! thread makes its blocking calls). Timeouts are only bounds (`scaled(BOUND)`).

#![allow(dead_code)]

use std::fs;
use std::future::poll_fn;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, SendStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::common::{scaled, BOUND};

/// How the client reaches nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/2 over cleartext TCP, with prior knowledge (no upgrade).
    H2c,
    /// HTTP/2 over TLS, negotiated with ALPN `h2`.
    Tls,
}

/// A self-signed certificate for `localhost`, made once per test binary
/// with the system's `openssl` command; the client trusts exactly it.
pub struct Certificate {
    pub cert_pem: String,
    pub key_pem: String,
    der: Vec<u8>,
}

pub fn certificate() -> &'static Certificate {
    static CERTIFICATE: OnceLock<Certificate> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let dir = std::env::temp_dir()
            .join("intermission-tests")
            .join(format!("h2-certificate-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a directory for the certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "7", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("running openssl (the TLS tests make their certificate with it)");
        assert!(
            output.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cert_pem = fs::read_to_string(&cert).expect("the certificate");
        let key_pem = fs::read_to_string(&key).expect("the key");
        let _ = fs::remove_dir_all(&dir);
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .expect("a PEM certificate")
            .as_ref()
            .to_vec();
        Certificate {
            cert_pem,
            key_pem,
            der,
        }
    })
}

/// Accepts the server's certificate only if it is the test's own one (and
/// checks the handshake's signatures with it as usual).
#[derive(Debug)]
struct PinnedCertificate {
    der: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the certificate the test gave nginx".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
            der: certificate().der.clone(),
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A request to send on a stream.
#[derive(Clone, Debug)]
pub struct H2Request {
    method: http::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
}

impl H2Request {
    pub fn get(path: &str) -> Self {
        H2Request {
            method: http::Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A POST with `body` (and its `content-length`), sent as flow control allows.
    pub fn post(path: &str, body: Vec<u8>) -> Self {
        H2Request {
            method: http::Method::POST,
            body: Some(body.into()),
            ..Self::get(path)
        }
    }

    /// Adds a header (its name is sent in lowercase, as HTTP/2 requires).
    pub fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }
}

/// One HTTP/2 connection to nginx.
pub struct H2Connection {
    runtime: Runtime,
    sender: Option<SendRequest<Bytes>>,
    driver: JoinHandle<Result<(), h2::Error>>,
    scheme: &'static str,
}

impl H2Connection {
    /// Connects and makes the HTTP/2 handshake; for TLS, asserts that ALPN
    /// chose `h2`.
    pub fn connect(port: u16, transport: Transport) -> H2Connection {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (sender, driver) = runtime.block_on(async {
            let tcp = bounded("connecting", TcpStream::connect(("127.0.0.1", port)))
                .await
                .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
            tcp.set_nodelay(true).expect("TCP_NODELAY");
            match transport {
                Transport::H2c => handshake(tcp).await,
                Transport::Tls => {
                    let name = ServerName::try_from("localhost").expect("a server name");
                    let tls = bounded("the TLS handshake", tls_connector().connect(name, tcp))
                        .await
                        .unwrap_or_else(|e| panic!("TLS handshake with port {port}: {e}"));
                    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    assert_eq!(
                        alpn.as_deref(),
                        Some(&b"h2"[..]),
                        "nginx must choose h2 by ALPN"
                    );
                    handshake(tls).await
                }
            }
        });
        H2Connection {
            runtime,
            sender: Some(sender),
            driver,
            scheme: match transport {
                Transport::H2c => "http",
                Transport::Tls => "https",
            },
        }
    }

    /// Opens a stream with `request` and returns at once; its answer is
    /// read in the background. Streams are opened (and their ids given) in
    /// the order of these calls.
    pub fn start(&mut self, request: H2Request) -> H2Stream {
        let what = format!("{} {} (HTTP/2)", request.method, request.path);
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(format!("{}://localhost{}", self.scheme, request.path));
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.header("content-length", body.len());
        }
        let head = builder.body(()).expect("a valid request");
        let sender = self.sender.take().expect("the connection is open");
        let end_of_stream = request.body.is_none();
        let (sender, response, send) = self.runtime.block_on(async {
            let mut sender = bounded("the connection to take a stream", sender.ready())
                .await
                .unwrap_or_else(|e| panic!("{what}: connection not ready: {e}"));
            let (response, send) = sender
                .send_request(head, end_of_stream)
                .unwrap_or_else(|e| panic!("{what}: cannot open a stream: {e}"));
            (sender, response, send)
        });
        self.sender = Some(sender);
        let id = u32::from(response.stream_id());
        let send = Arc::new(Mutex::new(send));
        let body_sent = Arc::new(AtomicUsize::new(0));
        if let Some(body) = request.body {
            self.runtime
                .spawn(send_body(send.clone(), body, body_sent.clone()));
        }
        H2Stream {
            id,
            what: format!("{what}, stream {id}"),
            send,
            body_sent,
            answer: self.runtime.spawn(read_response(response)),
            runtime: self.runtime.handle().clone(),
        }
    }

    /// Whether the connection is still up (nginx has not closed it, nor
    /// sent an error).
    pub fn is_open(&self) -> bool {
        !self.driver.is_finished()
    }

    /// Closes the TCP connection at once, as a browser tab that is closed:
    /// no GOAWAY, no reset of the open streams.
    pub fn close(self) {
        // Every task (the connection's driver, the streams) is dropped, and
        // with them the socket.
        drop(self.sender);
        self.runtime.shutdown_timeout(scaled(BOUND));
    }
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(scaled(BOUND), future)
        .await
        .unwrap_or_else(|_| panic!("gave up after {:?} waiting for {what}", scaled(BOUND)))
}

async fn handshake<T>(io: T) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = bounded("the HTTP/2 handshake", h2::client::handshake(io))
        .await
        .unwrap_or_else(|e| panic!("HTTP/2 handshake: {e}"));
    (sender, tokio::spawn(connection))
}

/// Sends `body` as the stream's and the connection's windows allow, and
/// ends the stream with its last byte. Stops if the stream is reset.
async fn send_body(send: Arc<Mutex<SendStream<Bytes>>>, mut body: Bytes, sent: Arc<AtomicUsize>) {
    while !body.is_empty() {
        send.lock().unwrap().reserve_capacity(body.len());
        let granted = poll_fn(|cx| send.lock().unwrap().poll_capacity(cx)).await;
        let n = match granted {
            Some(Ok(n)) => n.min(body.len()),
            // Reset, or the connection is gone.
            Some(Err(_)) | None => return,
        };
        if n == 0 {
            continue;
        }
        let chunk = body.split_to(n);
        if send
            .lock()
            .unwrap()
            .send_data(chunk, body.is_empty())
            .is_err()
        {
            return;
        }
        sent.fetch_add(n, Ordering::SeqCst);
    }
}

async fn read_response(response: ResponseFuture) -> Result<H2Response, h2::Error> {
    let response = response.await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut stream = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk?;
        let _ = stream.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(H2Response {
        status,
        headers,
        body,
    })
}

/// A stream that was opened; its answer is read in the background.
pub struct H2Stream {
    /// The HTTP/2 stream id (1, 3, 5, ... in the order they were opened).
    pub id: u32,
    what: String,
    send: Arc<Mutex<SendStream<Bytes>>>,
    body_sent: Arc<AtomicUsize>,
    answer: JoinHandle<Result<H2Response, h2::Error>>,
    runtime: Handle,
}

impl H2Stream {
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Sends RST_STREAM with CANCEL, as a browser does for a request it
    /// no longer needs (a navigation away, a fetch aborted).
    pub fn reset(&self) {
        self.send.lock().unwrap().send_reset(Reason::CANCEL);
    }

    /// Whether the stream has ended: answered whole, or reset (by either side).
    pub fn is_answered(&self) -> bool {
        self.answer.is_finished()
    }

    /// How many bytes of the request body flow control has let the client send.
    pub fn body_sent(&self) -> usize {
        self.body_sent.load(Ordering::SeqCst)
    }

    /// Waits for the whole answer; fails the test if the stream was reset or
    /// no answer came within the bound.
    pub fn finish(self) -> H2Response {
        let what = self.what;
        let answer = self.answer;
        match self
            .runtime
            .block_on(async { tokio::time::timeout(scaled(BOUND), answer).await })
        {
            Err(_) => panic!("{what}: no complete answer within {:?}", scaled(BOUND)),
            Ok(Err(e)) => panic!("{what}: the task reading the answer failed: {e}"),
            Ok(Ok(Err(e))) => panic!("{what}: no answer, the stream ended with: {e}"),
            Ok(Ok(Ok(response))) => response,
        }
    }

    /// What ended the stream, once it has ended: its answer or the error.
    pub fn outcome(self) -> Result<H2Response, String> {
        let answer = self.answer;
        match self
            .runtime
            .block_on(async { tokio::time::timeout(scaled(BOUND), answer).await })
        {
            Err(_) => Err(format!("not ended within {:?}", scaled(BOUND))),
            Ok(Err(e)) => Err(format!("task failed: {e}")),
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct H2Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl H2Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
