//! Mutual TLS between cluster nodes, authenticated by the node keys
//! themselves: TLS 1.3 with raw public keys (RFC 7250), rustls with ring.
//! Each side presents its Ed25519 node key and accepts the other only if
//! that key is an active cluster node of its ledger (or, for a node that
//! has no ledger yet, a key it was told to trust when it joined). No
//! certificates, no certificate authority: the ledger is the directory.

use super::{ClusterError, Ledgerside};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, ClientConfig};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, ServerConfig};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, OnceLock, Weak};

/// Whose keys a node accepts on its cluster connections.
pub struct Trust {
    /// Weak: the ledger side owns the network that owns this.
    side: OnceLock<Weak<Ledgerside>>,
    bootstrap: Vec<[u8; 32]>,
}

impl Trust {
    /// Trusts `bootstrap` keys, and the active cluster nodes of the ledger
    /// once [`Trust::attach`] names it.
    pub fn new(bootstrap: Vec<[u8; 32]>) -> Self {
        Trust {
            side: OnceLock::new(),
            bootstrap,
        }
    }

    /// Names the ledger whose active cluster nodes are trusted.
    pub fn attach(&self, side: &Arc<Ledgerside>) {
        let _ = self.side.set(Arc::downgrade(side));
    }

    /// True if `key` may talk to this node.
    pub fn allows(&self, key: &[u8; 32]) -> bool {
        if self.bootstrap.contains(key) {
            return true;
        }
        let Some(side) = self.side.get().and_then(Weak::upgrade) else {
            return false;
        };
        let state = side.state.lock().unwrap_or_else(|p| p.into_inner());
        state.cluster_members().any(|(k, _)| k.0 == *key)
    }
}

/// The node key inside a raw public key (an Ed25519 SubjectPublicKeyInfo).
fn key_of(spki: &[u8]) -> Option<[u8; 32]> {
    ed25519_dalek::VerifyingKey::from_public_key_der(spki)
        .ok()
        .map(|k| k.to_bytes())
}

/// Node keys are Ed25519; nothing else is offered or accepted.
const SCHEMES: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// Raw public keys exist in TLS 1.3 only.
const TLS13_ONLY: Result<HandshakeSignatureValid, rustls::Error> = Err(
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered),
);

/// Checks the peer's raw public key against the [`Trust`] and its
/// handshake signature with ring.
struct Verifier {
    trust: Arc<Trust>,
    algs: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cluster node key verifier")
    }
}

impl Verifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match key_of(end_entity.as_ref()) {
            Some(key) if self.trust.allows(&key) => Ok(()),
            Some(_) => Err(rustls::Error::General(
                "the peer's key is not an active cluster node".into(),
            )),
            None => Err(rustls::Error::General(
                "the peer did not present an Ed25519 node key".into(),
            )),
        }
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.algs,
        )
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        TLS13_ONLY
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for Verifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        TLS13_ONLY
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The TLS settings of a cluster node: as a server and as a client.
pub struct TlsConfigs {
    /// For the cluster listener.
    pub server: Arc<ServerConfig>,
    /// For connections to peers.
    pub client: Arc<ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn tls_err(e: impl ToString) -> ClusterError {
    ClusterError::Tls(e.to_string())
}

/// Builds both configurations around the node key `key`.
pub fn configs(key: &SigningKey, trust: Arc<Trust>) -> Result<TlsConfigs, ClusterError> {
    let provider = provider();
    let spki = key.verifying_key().to_public_key_der().map_err(tls_err)?;
    let pkcs8 = key.to_pkcs8_der().map_err(tls_err)?;
    let signer = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pkcs8.as_bytes().to_vec(),
        )))
        .map_err(tls_err)?;
    let certified = Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki.as_bytes().to_vec())],
        signer,
    ));
    let verifier = Arc::new(Verifier {
        trust,
        algs: provider.signature_verification_algorithms,
    });
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            certified.clone(),
        )));
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(certified)));
    Ok(TlsConfigs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// A listener that hands axum only connections whose TLS handshake, and
/// with it the peer's node key, succeeded. Handshakes run in their own
/// tasks, so a slow or hostile peer cannot hold up the others.
pub(crate) struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    local: std::net::SocketAddr,
}

/// Most time a peer has to finish its handshake.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    /// Accepts on `listener` with `config`.
    pub(crate) fn new(
        listener: tokio::net::TcpListener,
        config: Arc<ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster listener");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%addr, error = %e, "refused a cluster connection")
                        }
                        Err(_) => tracing::warn!(%addr, "cluster handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended: wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
