//! A small HTTP server on loopback that answers the way huggingface.co does (HEAD/GET on
//! /REPO/resolve/REV/FILE, X-Repo-Commit, ETag, weights behind a redirect to a storage host
//! carrying X-Linked-Etag, renamed repositories redirected), for the download tests.

use super::fixture;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The commit `main` points at.
pub const COMMIT: &str = "c0ffee0123456789";
/// The commit the tag `v1` points at (a full hash, so it can be asked for by name too).
pub const V1_COMMIT: &str = "1111111111222222222233333333334444444444";

/// Repositories by id: file name -> contents.
pub type Repos = HashMap<String, HashMap<String, Vec<u8>>>;

pub struct FakeHub {
    pub url: String,
    /// "METHOD PATH authorized?" for every request, in order.
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn serve(repos: Repos) -> FakeHub {
    // The hub, and the storage host its redirects point at (another origin, as on huggingface.co).
    let (hub, storage) =
        (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
    let url = format!("http://{}", hub.local_addr().unwrap());
    let storage_url = format!("http://{}", storage.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let repos = Arc::new(repos);
    for listener in [hub, storage] {
        let (repos, base, seen) = (repos.clone(), storage_url.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(stream, &repos, &base, &seen);
            }
        });
    }
    FakeHub { url, log }
}

fn answer(mut stream: TcpStream, repos: &Repos, storage: &str, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        authorized |= line.to_ascii_lowercase().starts_with("authorization: bearer secret");
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
    log.lock().unwrap().push(format!("{method} {path} {authorized}"));
    let send = |stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| {
        let mut head =
            format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        if method == "GET" {
            stream.write_all(body).unwrap();
        }
    };
    if let Some(rest) = path.strip_prefix("/storage/") {
        let (repo, file) = rest.rsplit_once("/").unwrap();
        let mut body = repos[&repo.replace('~', "/")][file].clone();
        if repo == "acme~corrupt" {
            // One byte changed on the way from storage: the hash the hub named no longer fits.
            body[100] ^= 1;
        }
        return send(&mut stream, "200 OK", &[], &body);
    }
    let Some((repo, rest)) = path[1..].split_once("/resolve/") else {
        return send(&mut stream, "404 Not Found", &[], b"");
    };
    if repo == "tiny" {
        // Renamed: the hub redirects on its own host.
        return send(
            &mut stream,
            "307 Temporary Redirect",
            &[("Location".into(), format!("/acme/tiny/resolve/{rest}"))],
            b"",
        );
    }
    if repo == "acme/gated" {
        return send(&mut stream, "401 Unauthorized", &[], b"");
    }
    let (revision, file) = rest.split_once('/').unwrap();
    let commit = match revision {
        "main" | COMMIT => COMMIT,
        "v1" | V1_COMMIT => V1_COMMIT,
        _ => {
            return send(
                &mut stream,
                "404 Not Found",
                &[("X-Error-Code".into(), "RevisionNotFound".into())],
                b"",
            );
        }
    };
    let Some(body) = repos.get(repo).and_then(|r| r.get(file)) else {
        return send(&mut stream, "404 Not Found", &[("X-Error-Code".into(), "EntryNotFound".into())], b"");
    };
    let commit = ("X-Repo-Commit".to_string(), commit.to_string());
    if file.ends_with(".safetensors") || file.ends_with(".bin") {
        // Large files live elsewhere: a redirect whose headers say what the file is.
        let location = format!("{storage}/storage/{}/{file}", repo.replace('/', "~"));
        let headers = [
            commit,
            ("Location".into(), location),
            // The hub names an LFS file by its SHA-256.
            ("X-Linked-Etag".into(), format!("\"{}\"", sha256(body))),
            ("X-Linked-Size".into(), body.len().to_string()),
        ];
        return send(&mut stream, "302 Found", &headers, b"");
    }
    let headers = [commit, ("ETag".into(), format!("W/\"etag-{}\"", file.replace('.', "-")))];
    send(&mut stream, "200 OK", &headers, body);
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

pub fn files(names: &[&str]) -> HashMap<String, Vec<u8>> {
    names.iter().map(|n| (n.to_string(), std::fs::read(fixture().join(n)).unwrap())).collect()
}
