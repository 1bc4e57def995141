//! The input of a run: which of evoctl's own stdin is forwarded, and how a stream is typed into
//! the session.
//!
//! `exec` and `node` forward stdin when it carries data (a pipe or a file), never a terminal
//! unless asked (`-i`), and never `/dev/null` or a closed stdin, whose input is empty anyway.
//! A stream (the command's input, a program too large for the spec) is read in pieces of at
//! most [`STDIN_CHUNK`] bytes as they come: each piece is sent as soon as it is read, as its own
//! base64, so a line piped in reaches the command at once and nothing is held whole. The
//! session's bounded input queue and its 256 KiB of unacknowledged input make the reading wait
//! for the remote side: memory stays bounded whatever the input's size.

use super::envelope::{Envelope, PIECE_END, STDIN_CHUNK, STREAM_END, Stdin};
use super::native::Input;
use crate::error::{Error, Result};
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// What evoctl's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStdin {
    /// A terminal: read only when asked (`exec -i`).
    Terminal,
    /// Closed, or `/dev/null`: nothing to send.
    Empty,
    /// A pipe, a file or another device: forwarded.
    Data,
}

impl LocalStdin {
    /// Look at fd 0.
    pub fn detect() -> LocalStdin {
        use rustix::fs::{FileType, fstat, stat};
        let stdin = rustix::stdio::stdin();
        if rustix::termios::isatty(stdin) {
            return LocalStdin::Terminal;
        }
        let Ok(meta) = fstat(stdin) else { return LocalStdin::Empty };
        let is_null = FileType::from_raw_mode(meta.st_mode) == FileType::CharacterDevice
            && stat("/dev/null").is_ok_and(|null| null.st_rdev == meta.st_rdev);
        if is_null { LocalStdin::Empty } else { LocalStdin::Data }
    }
}

/// Whether a run forwards evoctl's stdin: `-T` never, `-i` always, otherwise when it carries
/// data (not a terminal, not `/dev/null`).
pub fn forwards(stdin: LocalStdin, interactive: bool, no_stdin: bool) -> bool {
    match (no_stdin, interactive, stdin) {
        (true, _, _) => false,
        (false, true, _) => true,
        (false, false, stdin) => stdin == LocalStdin::Data,
    }
}

/// Type `source` into the session: its pieces, then the end mark. Returns early (and quietly)
/// once the session stops taking input; a local read error is an error.
pub async fn type_stream(source: &Stdin, input: &mpsc::Sender<Input>) -> Result<()> {
    match source {
        Stdin::Bytes(data) => {
            let _ = input.send(Input::Data(Envelope::stdin_payload(data))).await;
            Ok(())
        }
        Stdin::File(path) => {
            let io = |source| Error::Io { path: path.clone(), source };
            let file = tokio::fs::File::open(path).await.map_err(io)?;
            pieces(file, input).await.map_err(io)
        }
        Stdin::Local => pieces(tokio::io::stdin(), input)
            .await
            .map_err(|source| Error::Io { path: PathBuf::from("<stdin>"), source }),
        Stdin::Files(files) => {
            for (path, size) in files {
                let io = |source| Error::Io { path: path.clone(), source };
                let file = tokio::fs::File::open(path).await.map_err(io)?;
                match exactly(file, *size, input).await.map_err(io)? {
                    Typed::Whole => {}
                    Typed::Refused => return Ok(()),
                }
            }
            let _ = input.send(Input::Data(vec![STREAM_END])).await;
            Ok(())
        }
    }
}

/// How typing one file of a [`Stdin::Files`] stream went.
enum Typed {
    Whole,
    /// The session stopped taking input.
    Refused,
}

/// Exactly `size` bytes of `source`, each read as a piece; a source that ends sooner changed
/// since it was measured, which is an error.
async fn exactly(source: impl AsyncRead + Unpin, size: u64, input: &mpsc::Sender<Input>) -> std::io::Result<Typed> {
    let mut source = source.take(size);
    let mut buffer = vec![0u8; STDIN_CHUNK];
    let mut left = size;
    while left > 0 {
        let read = source.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file changed while it was copied: it ended {left} bytes short of the {size} it had"),
            ));
        }
        left -= read as u64;
        if input.send(Input::Data(Envelope::stdin_piece(&buffer[..read], PIECE_END))).await.is_err() {
            return Ok(Typed::Refused);
        }
    }
    Ok(Typed::Whole)
}

/// Each read as one piece, as soon as it is read; the end mark at the end of the source.
async fn pieces(mut source: impl AsyncRead + Unpin, input: &mpsc::Sender<Input>) -> std::io::Result<()> {
    let mut buffer = vec![0u8; STDIN_CHUNK];
    loop {
        let read = source.read(&mut buffer).await?;
        let piece = match read {
            0 => vec![STREAM_END],
            n => Envelope::stdin_piece(&buffer[..n], PIECE_END),
        };
        if input.send(Input::Data(piece)).await.is_err() || read == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_is_read_only_when_asked_and_no_stdin_wins() {
        use LocalStdin::*;
        assert!(forwards(Data, false, false));
        assert!(!forwards(Terminal, false, false));
        assert!(!forwards(Empty, false, false));
        assert!(forwards(Terminal, true, false));
        assert!(forwards(Empty, true, false));
        assert!(!forwards(Data, false, true));
    }

    #[tokio::test]
    async fn every_read_is_a_piece_of_its_own_and_the_end_is_marked() {
        let (tx, mut rx) = mpsc::channel(8);
        let (mut writer, reader) = tokio::io::duplex(64);
        let typing = tokio::spawn(async move { pieces(reader, &tx).await });
        let mut typed = Vec::new();
        for chunk in [&b"hello\n"[..], b"a", b"bc"] {
            tokio::io::AsyncWriteExt::write_all(&mut writer, chunk).await.unwrap();
            let Some(Input::Data(piece)) = rx.recv().await else { panic!("a piece") };
            typed.push(String::from_utf8(piece).unwrap());
        }
        drop(writer);
        let Some(Input::Data(end)) = rx.recv().await else { panic!("the end mark") };
        typed.push(String::from_utf8(end).unwrap());
        typing.await.unwrap().unwrap();
        // Independent pieces, each decodable on its own ("a" is not held back for "bc").
        assert_eq!(typed, ["aGVsbG8K,", "YQ==,", "YmM=,", "."]);
    }

    /// Files are typed one after another, each exactly the size it was measured at (a file that
    /// grew since is cut there), then one end mark; a file that shrank since is an error.
    #[tokio::test]
    async fn files_are_typed_at_their_measured_sizes_and_a_shrunk_one_is_an_error() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, b"defgh").unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        type_stream(&Stdin::Files(vec![(a.clone(), 3), (b.clone(), 4)]), &tx).await.unwrap();
        drop(tx);
        let mut typed = Vec::new();
        while let Some(Input::Data(piece)) = rx.recv().await {
            typed.extend(piece);
        }
        let typed = String::from_utf8(typed).unwrap();
        let (pieces, end) = typed.split_at(typed.len() - 1);
        assert_eq!(end, ".");
        let bytes: Vec<u8> = pieces
            .split_terminator(',')
            .flat_map(|piece| base64::engine::general_purpose::STANDARD.decode(piece).unwrap())
            .collect();
        assert_eq!(bytes, b"abcdefg");

        let (tx, _rx) = mpsc::channel(64);
        let err = type_stream(&Stdin::Files(vec![(a.clone(), 10)]), &tx).await.unwrap_err();
        assert!(
            err.to_string().ends_with("the file changed while it was copied: it ended 7 bytes short of the 10 it had"),
            "{err}"
        );
    }
}
