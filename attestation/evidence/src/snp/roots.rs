//! AMD's published ARK, ASK and ASVK for each product, built into the verifier.
//! The ARK here is the trust anchor: a chain passed by a caller is accepted only
//! when its ARK is byte-for-byte this one. The same certificates serve as the
//! chain when the caller passes none.
use super::chain::AmdChain;
use super::product::Product;
use crate::x509;

struct Pems {
    ark: &'static [u8],
    ask: &'static [u8],
    /// ASK, ARK and ASVK, as AMD's KDS serves them for VLEKs.
    ask_ark_asvk: &'static [u8],
}

fn pems(product: Product) -> Pems {
    match product {
        Product::Milan => Pems {
            ark: include_bytes!("../../testdata/snp/ark-ask/milan_ark.pem"),
            ask: include_bytes!("../../testdata/snp/ark-ask/milan_ask.pem"),
            ask_ark_asvk: include_bytes!("../../testdata/snp/trustee/milan_ask_ark_asvk.pem"),
        },
        Product::Genoa => Pems {
            ark: include_bytes!("../../testdata/snp/ark-ask/genoa_ark.pem"),
            ask: include_bytes!("../../testdata/snp/ark-ask/genoa_ask.pem"),
            ask_ark_asvk: include_bytes!("../../testdata/snp/trustee/genoa_ask_ark_asvk.pem"),
        },
        Product::Turin => Pems {
            ark: include_bytes!("../../testdata/snp/ark-ask/turin_ark.pem"),
            ask: include_bytes!("../../testdata/snp/ark-ask/turin_ask.pem"),
            ask_ark_asvk: include_bytes!("../../testdata/snp/trustee/turin_ask_ark_asvk.pem"),
        },
    }
}

/// AMD's chain for `product`: ARK, ASK and ASVK.
pub(crate) fn amd_chain(product: Product) -> Result<AmdChain, String> {
    let p = pems(product);
    let ark = x509::parse_one(p.ark)?;
    let ask = x509::parse_one(p.ask)?;
    let bundle = AmdChain::from_certs(x509::parse_bundle(p.ask_ark_asvk)?)?;
    if bundle.ark != ark || bundle.ask.as_ref() != Some(&ask) {
        return Err(format!(
            "built-in {} ASK/ARK bundle disagrees with the ARK and ASK files",
            product.amd_name()
        ));
    }
    Ok(AmdChain {
        ark,
        ask: Some(ask),
        asvk: bundle.asvk,
    })
}

/// AMD's ARK, ASK and ASVK for `product` as one PEM bundle (ASK, ARK, ASVK), e.g.
/// for a KBS that hands the chain to clients.
pub fn amd_chain_pem(product: Product) -> &'static [u8] {
    pems(product).ask_ark_asvk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::chain::verify_rsa_pss;

    #[test]
    fn built_in_chains_are_amds_and_self_consistent() {
        for product in Product::ALL {
            let c = amd_chain(product).unwrap();
            assert_eq!(c.product(), Some(product));
            assert_eq!(
                x509::subject_cn(&c.ark),
                format!("ARK-{}", product.amd_name())
            );
            assert_eq!(
                x509::subject_cn(c.asvk.as_ref().unwrap()),
                format!("SEV-VLEK-{}", product.amd_name())
            );
            verify_rsa_pss(&c.ark, &c.ark).unwrap();
            verify_rsa_pss(&c.ark, c.ask.as_ref().unwrap()).unwrap();
            verify_rsa_pss(&c.ark, c.asvk.as_ref().unwrap()).unwrap();
        }
    }

    #[test]
    fn ark_fingerprints_are_amds() {
        // SHA-256 of AMD's ARK certificates as published by AMD's KDS.
        let fp = |p| x509::fingerprint(&amd_chain(p).unwrap().ark);
        assert_eq!(
            fp(Product::Milan),
            "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
        );
        assert_eq!(
            fp(Product::Genoa),
            "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
        );
        assert_eq!(
            fp(Product::Turin),
            "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"
        );
    }
}
