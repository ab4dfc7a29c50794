//! Which AMD EPYC generation produced a report. The product picks the AMD root
//! (ARK) to pin and the layout of the TCB fields, so it is settled from every
//! source at hand (the caller, the report's CPUID, the VCEK, the chain) and all
//! sources must agree.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sev::Generation;

/// An SEV-SNP capable EPYC generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// Lower-case name, as on the command line (`milan`).
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "milan",
            Product::Genoa => "genoa",
            Product::Turin => "turin",
        }
    }

    /// AMD's spelling, as in certificate names (`ARK-Milan`, `SEV-Milan`).
    pub fn amd_name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// From the report's CPUID family and model (report version 3 and later),
    /// using the `sev` crate's table of EPYC models.
    pub fn from_cpuid(family: u8, model: u8) -> Result<Product, String> {
        let not_snp =
            || format!("CPUID family {family:#x} model {model:#x} is not Milan, Genoa or Turin");
        match Generation::identify_cpu(family, model).map_err(|_| not_snp())? {
            Generation::Milan => Ok(Product::Milan),
            Generation::Genoa => Ok(Product::Genoa),
            Generation::Turin => Ok(Product::Turin),
            _ => Err(not_snp()),
        }
    }

    /// From a VCEK productName extension (`Milan-B0`, `Genoa`) or a certificate
    /// name suffix; the stepping after `-` is ignored.
    pub fn from_amd_name(name: &str) -> Option<Product> {
        let base = name.split('-').next().unwrap_or(name);
        Product::ALL
            .into_iter()
            .find(|p| p.amd_name().eq_ignore_ascii_case(base))
    }

    pub(crate) fn generation(self) -> Generation {
        match self {
            Product::Milan => Generation::Milan,
            Product::Genoa => Generation::Genoa,
            Product::Turin => Generation::Turin,
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Not one of milan, genoa, turin.
#[derive(Debug, thiserror::Error)]
#[error("unknown SNP product {0:?}: expected milan, genoa or turin")]
pub struct UnknownProduct(pub String);

impl FromStr for Product {
    type Err = UnknownProduct;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownProduct(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_table() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Ok(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Ok(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xa0), Ok(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1a, 0x02), Ok(Product::Turin));
        assert!(Product::from_cpuid(0x17, 0x31)
            .unwrap_err()
            .contains("family 0x17 model 0x31"));
        // Venice is known to sev but not supported here.
        assert!(Product::from_cpuid(0x1a, 0x50).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(Product::from_amd_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_amd_name("Genoa"), Some(Product::Genoa));
        assert_eq!(Product::from_amd_name("Rome"), None);
        assert_eq!("Turin".parse::<Product>().unwrap(), Product::Turin);
        assert!("naples".parse::<Product>().is_err());
    }
}
