//! Just enough WebSocket (RFC 6455) to check that upgrades pass through the
//! worker: the handshake (SHA-1 + base64, written out here rather than pulled
//! in as crates), text/close/ping frames, a client and an echo server.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::http::{invalid, read_head, DeadlineReader, Headers, ServerRequest};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// SHA-1 (FIPS 180-4), for `Sec-WebSocket-Accept` only.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Sec-WebSocket-Accept` answer to `key`.
pub fn accept_for(key: &str) -> String {
    base64(&sha1(format!("{key}{GUID}").as_bytes()))
}

/// Writes one final frame; clients mask (RFC 6455 §5.3), servers do not.
pub fn write_frame(w: &mut impl Write, opcode: u8, payload: &[u8], mask: bool) -> io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    let mask_bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one frame: (opcode, unmasked payload). Fragmented messages are not
/// needed by these tests and are refused.
pub fn read_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head)?;
    if head[0] & 0x80 == 0 {
        return Err(invalid("fragmented frame"));
    }
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > 1 << 20 {
        return Err(invalid("frame too large for a test"));
    }
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// The origin side: completes the handshake, greets, echoes text frames
/// (`echo: <text>`) until a close frame or 10 s of silence.
pub fn serve_echo(req: &ServerRequest, stream: &mut TcpStream, greeting: &str) -> io::Result<()> {
    let upgrade = req.header("upgrade").unwrap_or("");
    let Some(key) = req
        .header("sec-websocket-key")
        .filter(|_| upgrade.eq_ignore_ascii_case("websocket"))
    else {
        return super::http::write_response(stream, 426, &[], b"websocket upgrade required");
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_for(key)
    );
    stream.write_all(head.as_bytes())?;
    write_frame(stream, OP_TEXT, greeting.as_bytes(), false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = stream.try_clone()?;
    loop {
        let (opcode, payload) = read_frame(&mut reader)?;
        match opcode {
            OP_TEXT => {
                let mut echo = b"echo: ".to_vec();
                echo.extend_from_slice(&payload);
                write_frame(stream, OP_TEXT, &echo, false)?;
            }
            OP_PING => write_frame(stream, OP_PONG, &payload, false)?,
            OP_CLOSE => {
                write_frame(stream, OP_CLOSE, &payload, false)?;
                return Ok(());
            }
            _ => {}
        }
    }
}

/// The visitor side, talking to the worker.
pub struct Client {
    stream: TcpStream,
    reader: DeadlineReader,
    pub status: u16,
    pub headers: Headers,
}

impl Client {
    /// Sends an upgrade request for `path` and reads the answer's head.
    pub fn connect(port: u16, path: &str, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        let key = base64(b"edgeguard-e2e-ws");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut writer = stream.try_clone()?;
        writer.write_all(request.as_bytes())?;
        let mut reader =
            DeadlineReader::new(stream.try_clone()?, std::time::Instant::now() + timeout);
        let (status_line, headers) = read_head(&mut reader)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        if status == 101 && headers.get("sec-websocket-accept") != Some(&accept_for(&key)) {
            return Err(invalid(format!("wrong Sec-WebSocket-Accept: {headers:?}")));
        }
        Ok(Client {
            stream,
            reader,
            status,
            headers,
        })
    }

    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        write_frame(&mut self.stream, OP_TEXT, text.as_bytes(), true)
    }

    pub fn send_close(&mut self) -> io::Result<()> {
        write_frame(&mut self.stream, OP_CLOSE, &1000u16.to_be_bytes(), true)
    }

    /// The next frame that is not a ping (pings are answered).
    pub fn recv(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            let (opcode, payload) = read_frame(&mut self.reader)?;
            if opcode == OP_PING {
                write_frame(&mut self.stream, OP_PONG, &payload, true)?;
                continue;
            }
            return Ok((opcode, payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}
