//! Arbitrary bytes as what a firmware or log server sends (the server is named by the CSMS, so
//! it is untrusted), read four ways:
//!
//! - as a response head: httparse's reading and the client's use of the headers must not panic;
//!   a status it accepts is 100-599 (RFC 9110 15); every line as a chunk-size line too;
//! - as a chunked body (`ChunkedDecoder`): the same bytes fed in one read and split across many
//!   reads decode to the same body, stop at the same byte and fail alike; a body that decodes
//!   comes with the consumed input ending where the decoder said it is done;
//! - as the payload of a chunked body: its lines, encoded as chunks (with extensions and a
//!   trailer), decode back to exactly their concatenation, however the stream is split;
//! - as Location values (one per line): resolved against a few base URLs and followed as a
//!   redirect chain (`redirect_target`). A resolved URL prints and parses back to itself; an
//!   https:// URL never leads to http://; credentials never follow to another origin; no more
//!   than `MAX_REDIRECTS` redirects are followed.
#![no_main]

use ocpp_agent::shell::http::{ChunkedDecoder, MAX_REDIRECTS, Url, parse_chunk_size, parse_head, redirect_target};

/// Decodes `input` fed in pieces whose sizes cycle through `steps` (empty: one piece).
/// Returns the body, how many input bytes were consumed when the body ended (`None`: not
/// ended), or the error.
fn decode(input: &[u8], steps: &[usize]) -> Result<(Vec<u8>, Option<usize>), String> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut at = 0;
    let mut sizes = steps.iter().copied().cycle();
    while at < input.len() {
        let size = sizes.next().unwrap_or(input.len());
        let piece = &input[at..(at + size).min(input.len())];
        let used = decoder.feed(piece, &mut body)?;
        assert!(used == piece.len() || decoder.is_done(), "input left over mid-body");
        at += used;
        if decoder.is_done() {
            return Ok((body, Some(at)));
        }
    }
    Ok((body, None))
}

fn chunked_stream(data: &[u8]) {
    let whole = decode(data, &[]);
    let steps: Vec<usize> = data.iter().take(16).map(|b| (*b as usize % 7) + 1).collect();
    for steps in [vec![1], steps] {
        let split = decode(data, &steps);
        match (&whole, &split) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "split {steps:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("one read {whole:?}, split {steps:?} {split:?}"),
        }
    }
}

fn chunked_roundtrip(data: &[u8]) {
    let pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|p| !p.is_empty()).collect();
    let mut stream = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let size = if i % 2 == 0 { format!("{:x}", piece.len()) } else { format!("{:X};ext=\"v\"", piece.len()) };
        stream.extend_from_slice(size.as_bytes());
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(piece);
        stream.extend_from_slice(b"\r\n");
    }
    stream.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let expected: Vec<u8> = pieces.concat();
    for steps in [vec![], vec![1], vec![3, 1, 4, 1, 5, 9, 2, 6]] {
        let (body, end) = decode(&stream, &steps).expect("a well-formed chunked body decodes");
        assert_eq!(body, expected);
        assert_eq!(end, Some(stream.len()));
    }
}

/// The URL printed (without credentials) and parsed again is the same URL.
fn reparses(url: &Url) {
    let again = Url::parse(&url.to_string()).unwrap_or_else(|e| panic!("{url:?} printed as {url}: {e}"));
    assert_eq!((&again.host, again.port, again.tls, &again.target), (&url.host, url.port, url.tls, &url.target));
}

fn redirects(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let locations: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let bases = [
        "https://fw.example.com/images/v2/a.bin?sig=1",
        "http://user:secret@10.0.0.1:8080/dir/",
        "http://[::1]/x",
    ];
    for base in bases {
        let base = Url::parse(base).unwrap();
        for location in &locations {
            if let Ok(next) = redirect_target(&base, location, 0) {
                reparses(&next);
                assert!(!(base.tls && !next.tls), "https -> http: {location:?}");
                let same_origin = (&next.host, next.port, next.tls) == (&base.host, base.port, base.tls);
                if !same_origin && next.basic_auth.is_some() {
                    // Only credentials written in the Location itself may go elsewhere.
                    assert!(location.contains('@'), "credentials carried to {next:?}");
                }
            }
        }
        // The chain: every line a redirect of the one before.
        let mut url = base.clone();
        let mut followed = 0;
        for location in &locations {
            match redirect_target(&url, location, followed) {
                Ok(next) => {
                    assert!(followed < MAX_REDIRECTS, "redirect {} followed", followed + 1);
                    assert!(!(url.tls && !next.tls));
                    url = next;
                    followed += 1;
                }
                Err(_) => {}
            }
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(head) = parse_head(data) {
        assert!((100..=599).contains(&head.status), "{head:?}");
    }
    for line in data.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let _ = parse_chunk_size(line.trim_end_matches('\r'));
    }
    chunked_stream(data);
    chunked_roundtrip(data);
    redirects(data);
});
