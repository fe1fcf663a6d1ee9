//! The principal of a TLS client: `User:` and its certificate's subject in RFC 2253 form, as
//! Kafka names it by default (`User:CN=alice,OU=eng,O=Example`).

use x509_parser::prelude::*;

/// Attribute types RFC 2253 writes by name; the rest appear as dotted OIDs.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// Escapes an attribute value as RFC 2253 section 2.4 says.
fn escape(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The subject of a DER certificate as an RFC 2253 string: the last RDN first, multi-valued
/// RDNs joined by `+`. A value that is not a string is written `#` and its hex bytes.
pub fn subject_of(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let rdns: Vec<_> = cert.subject().iter().collect();
    let mut out = String::new();
    for (n, rdn) in rdns.iter().rev().enumerate() {
        if n > 0 {
            out.push(',');
        }
        for (m, attr) in rdn.iter().enumerate() {
            if m > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            match short_name(&oid) {
                Some(name) => out.push_str(name),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attr.as_str() {
                Ok(s) => escape(s, &mut out),
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().data.iter() {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The Kafka principal of a client certificate.
pub fn principal_of(der: &[u8]) -> Result<String, String> {
    subject_of(der).map(|s| format!("User:{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_rfc2253() {
        let mut out = String::new();
        escape("#a, b+c \"d\" ", &mut out);
        assert_eq!(out, "\\#a\\, b\\+c \\\"d\\\"\\ ");
    }

    #[test]
    fn names_the_subject_last_rdn_first() {
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Sediment, Test");
        dn.push(rcgen::DnType::OrganizationalUnitName, "eng");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            principal_of(cert.der()).unwrap(),
            "User:CN=alice,OU=eng,O=Sediment\\, Test,C=US"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(principal_of(b"not a certificate").is_err());
    }
}
