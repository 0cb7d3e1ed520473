//! Certificates and keys on disk, in `<state dir>/certs/`: installed root certificates
//! (`root-<kind>-<serial>.pem`), the station certificate chain (`station-cert.pem`) and its
//! private key (`station-key.pem`), and the key of a pending CSR (`station-key.pending.pem`).
//! Keys are created here, owner-only (0600), and never leave the device (A02.FR.05).

use crate::ocpp::x509;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tracing::warn;

pub struct CertDir {
    dir: PathBuf,
}

/// What the directory holds at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// `(kind, pem)` of every installed root.
    pub roots: Vec<(String, String)>,
    /// The station certificate chain, if a CertificateSigned installed one.
    pub station_chain: Option<String>,
}

impl CertDir {
    /// `certs/` next to the journal file.
    pub fn beside(journal: &Path) -> CertDir {
        let dir = journal
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("certs");
        CertDir { dir }
    }

    fn root_path(&self, kind: &str, id: &str) -> PathBuf {
        let safe = |s: &str| {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
        };
        self.dir
            .join(format!("root-{}-{}.pem", safe(kind), safe(id)))
    }

    pub fn station_cert(&self) -> PathBuf {
        self.dir.join("station-cert.pem")
    }

    pub fn station_key(&self) -> PathBuf {
        self.dir.join("station-key.pem")
    }

    fn pending_key(&self) -> PathBuf {
        self.dir.join("station-key.pending.pem")
    }

    /// The installed certificate and key for TLS client authentication, when both exist.
    pub fn station_identity(&self) -> Option<(PathBuf, PathBuf)> {
        let (c, k) = (self.station_cert(), self.station_key());
        (c.is_file() && k.is_file()).then_some((c, k))
    }

    pub fn load(&self) -> Loaded {
        let mut loaded = Loaded::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return loaded;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if let Some(rest) = name
                .strip_prefix("root-")
                .and_then(|r| r.strip_suffix(".pem"))
            {
                let kind = rest.split('-').next().unwrap_or_default().to_owned();
                match std::fs::read_to_string(&path) {
                    Ok(pem) => loaded.roots.push((kind, pem)),
                    Err(e) => warn!(file = %path.display(), error = %e, "unreadable certificate"),
                }
            }
        }
        loaded.station_chain = std::fs::read_to_string(self.station_cert()).ok();
        loaded
    }

    /// The installed CSMS roots, for TLS server verification.
    pub fn csms_roots(&self) -> Vec<Vec<u8>> {
        self.load()
            .roots
            .iter()
            .filter(|(kind, _)| kind == "CSMSRootCertificate")
            .flat_map(|(_, pem)| x509::pem_blocks(pem, "CERTIFICATE").unwrap_or_default())
            .collect()
    }

    pub fn store_root(&self, kind: &str, id: &str, pem: &str) -> std::io::Result<()> {
        write_atomically(&self.root_path(kind, id), pem.as_bytes(), 0o644)
    }

    pub fn remove_root(&self, kind: &str, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.root_path(kind, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A02.FR.02/03: a new P-256 key (kept as the pending key, 0600) and its CSR.
    pub fn create_csr(
        &self,
        organization: &str,
        common_name: &str,
    ) -> Result<(String, Vec<u8>), String> {
        let rng = ring::rand::SystemRandom::new();
        let (pkcs8, spki) = x509::generate_key(&rng).map_err(|e| e.to_string())?;
        let csr = x509::build_csr(organization, common_name, &spki, &|m| {
            x509::sign_with(&pkcs8, m, &rng)
        })
        .map_err(|e| e.to_string())?;
        write_atomically(
            &self.pending_key(),
            x509::to_pem("PRIVATE KEY", &pkcs8).as_bytes(),
            0o600,
        )
        .map_err(|e| format!("writing the pending key: {e}"))?;
        Ok((x509::to_pem("CERTIFICATE REQUEST", &csr), spki))
    }

    /// The CSMS signed our CSR: the chain becomes the station certificate and the pending
    /// key the station key.
    pub fn activate(&self, chain_pem: &str) -> std::io::Result<()> {
        write_atomically(&self.station_cert(), chain_pem.as_bytes(), 0o644)?;
        std::fs::rename(self.pending_key(), self.station_key())?;
        sync_dir(&self.dir);
        Ok(())
    }
}

/// Writes a file so that a crash leaves the old or the new content, never a torn one.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_owner_only_and_activation_moves_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertDir::beside(&tmp.path().join("agent.db"));
        let (csr, spki) = dir.create_csr("Test CSO", "SN-1").unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(!spki.is_empty());
        let mode = std::fs::metadata(dir.pending_key())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&dir.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(dir.station_identity().is_none());
        dir.activate("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
            .unwrap();
        assert!(dir.station_identity().is_some());
        let mode = std::fs::metadata(dir.station_key())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        dir.store_root("CSMSRootCertificate", "0a", "pem").unwrap();
        assert_eq!(
            dir.load().roots,
            vec![("CSMSRootCertificate".to_string(), "pem".to_string())]
        );
        dir.remove_root("CSMSRootCertificate", "0a").unwrap();
        assert!(dir.load().roots.is_empty());
    }
}
