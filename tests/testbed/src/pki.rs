//! Test certificates for the controller -> agent link, made with rcgen: a
//! CA, the controller's serving certificate (a DNS name agents expect) and
//! agents' client certificates (SAN URI `spiffe://ballast/agent/<node>`).
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The DNS name in the controller's certificate, which agents expect.
pub const SERVER_NAME: &str = "controller.ballast.test";

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// The controller's serving certificate.
    pub fn server(&self) -> Leaf {
        let dns = SanType::DnsName(SERVER_NAME.try_into().unwrap());
        self.leaf(vec![dns], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// An agent's client certificate for `node` (SAN URI
    /// `spiffe://ballast/agent/<node>`).
    pub fn agent(&self, node: &str) -> Leaf {
        let uri = format!("spiffe://ballast/agent/{node}");
        self.client(vec![SanType::URI(uri.as_str().try_into().unwrap())])
    }

    /// A client certificate with arbitrary SANs.
    pub fn client(&self, sans: Vec<SanType>) -> Leaf {
        self.leaf(sans, ExtendedKeyUsagePurpose::ClientAuth)
    }
}
