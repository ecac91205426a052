//! Hitless binary upgrade: the running relevo hands its listening sockets to a new
//! binary over a Unix socket (`SCM_RIGHTS`, as HAProxy's `-x` and Pingora's `--upgrade`
//! do), the new one starts accepting on them, and the old one stops accepting and
//! drains. The kernel keeps a listening socket open while any process holds it, and
//! both processes share its accept queue, so no connection is refused in between.
//!
//! The conversation, one text line each way (`docs/upgrade.md`):
//!
//! ```text
//! new → old  relevo-upgrade 1 take
//! old → new  fds proxy              (with SCM_RIGHTS: one descriptor per name, in order)
//! new → old  serving                (the new one accepts on them from now on)
//! old → new  bye                    (the old one stops accepting and drains)
//! ```
//!
//! The names say which listener each descriptor is, so that another one (the admin
//! listener, as `admin`) can join without a new version: a taker closes the
//! descriptors it has no use for and binds itself the ones it did not get. The old
//! process may answer `error REASON` instead of `fds`. Until `serving` it keeps
//! accepting, so a new binary that dies on the way costs nothing.

use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// The name of the listener clients connect to.
pub const PROXY: &str = "proxy";
/// The name of the admin listener (metrics, status page), when one is configured.
pub const ADMIN: &str = "admin";

/// The version of the conversation; an old process refuses a request for another.
const VERSION: u32 = 1;

/// Most descriptors one handover may carry (room for the listeners still to come).
const MAX_FDS: usize = 16;

/// Longest line either side sends; anything longer is not a relevo talking.
const MAX_LINE: usize = 1024;

/// How long one side waits for a line the other sends at once (the request after
/// connecting, the descriptors after asking, `bye` after `serving`), so that a stray
/// client cannot hold the upgrade socket.
const PROMPT: Duration = Duration::from_secs(10);

/// The running relevo's side: a Unix socket that hands its listeners to the first new
/// binary that asks and then says it is serving.
#[derive(Debug)]
pub struct Offer {
    /// Where new binaries connect.
    socket: UnixListener,
    /// The socket file, removed on drop unless a successor has taken over.
    path: PathBuf,
    /// The socket file's device, inode and owner: whether the file at `path` is still
    /// ours (a successor renames its own over it), and the only user (besides root)
    /// allowed to take the listeners.
    file: (u64, u64, u32),
    /// The listeners to hand over, by name: duplicates, which close on their own.
    fds: Vec<(&'static str, OwnedFd)>,
    /// Set once a successor has taken over: from then on the socket file is its own.
    handed: bool,
}

impl Offer {
    /// Listens on `path` (mode 0600, replacing a socket file already there) to hand
    /// `fds` over. The socket is bound beside `path` and renamed onto it, so that a
    /// successor replacing its predecessor's file never leaves `path` missing.
    pub fn listen(path: &Path, fds: Vec<(&'static str, OwnedFd)>) -> io::Result<Offer> {
        // A typo must not replace a file that is not ours to replace.
        if let Ok(m) = fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        // Left by a process that died between bind and rename, with our pid.
        let _ = fs::remove_file(&tmp);
        let socket = UnixListener::bind(&tmp)?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let m = fs::symlink_metadata(path)?;
        Ok(Offer {
            socket,
            path: path.to_path_buf(),
            file: (m.dev(), m.ino(), m.uid()),
            fds,
            handed: false,
        })
    }

    /// Resolves once a new binary has taken the listeners and said it is serving: the
    /// cue to stop accepting and drain. Failed attempts are logged and change nothing.
    pub async fn handed_over(&mut self) {
        loop {
            let stream = match self.socket.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    warn!("upgrade: accept failed on {}: {e}", self.path.display());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = Peer::of(&stream);
            match self.hand(stream).await {
                Ok(()) => {
                    self.handed = true;
                    info!("upgrade: handed the listener to {peer}");
                    return;
                }
                Err(e) => warn!("upgrade: takeover by {peer} failed ({e}); still serving"),
            }
        }
    }

    /// One conversation with a would-be successor; `Ok` once it serves.
    async fn hand(&self, mut stream: UnixStream) -> io::Result<()> {
        let uid = stream.peer_cred()?.uid();
        if uid != self.file.2 && uid != 0 {
            let _ = stream.write_all(b"error not the same user\n").await;
            return Err(other(format!("uid {uid} may not take the listeners")));
        }
        let request = prompt(read_line(&mut stream)).await?;
        if request != format!("relevo-upgrade {VERSION} take") {
            let _ = stream.write_all(b"error unsupported request\n").await;
            return Err(other(format!("unsupported request {request:?}")));
        }
        let names: Vec<&str> = self.fds.iter().map(|(name, _)| *name).collect();
        let raw: Vec<RawFd> = self.fds.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        send_with_fds(&mut stream, format!("fds {}\n", names.join(" ")), &raw).await?;
        // No time limit: the new binary may take a while to build its state, and until
        // it says it serves (or goes away) this process serves as before.
        match read_line(&mut stream).await {
            Ok(line) if line == "serving" => {}
            Ok(line) => return Err(other(format!("unexpected {line:?} instead of serving"))),
            Err(e) => return Err(other(format!("it went away before serving: {e}"))),
        }
        // The successor serves either way; this only tells it we are letting go.
        let _ = stream.write_all(b"bye\n").await;
        Ok(())
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        // Only our own file: another relevo may have put its socket there since.
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == (self.file.0, self.file.1));
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The new binary's side: the listeners received from the running relevo, held until
/// this process tells it that it serves.
#[derive(Debug)]
pub struct Takeover {
    /// The conversation with the old process, to say `serving` at the end (dropping
    /// it before then tells the old process to carry on).
    stream: UnixStream,
    /// Who answered, for the logs.
    peer: Peer,
    /// The descriptors received, by name, until taken.
    fds: Vec<(String, OwnedFd)>,
}

impl Takeover {
    /// Connects to the relevo offering its listeners on `path` and receives them.
    pub async fn connect(path: &Path) -> io::Result<Takeover> {
        let mut stream = prompt(UnixStream::connect(path)).await?;
        let peer = Peer::of(&stream);
        let request = format!("relevo-upgrade {VERSION} take\n");
        stream.write_all(request.as_bytes()).await?;
        let (mut line, fds) = prompt(recv_with_fds(&stream)).await?;
        if !line.ends_with('\n') {
            // The line came in pieces: the descriptors arrived with the first one.
            line.push_str(&prompt(read_line(&mut stream)).await?);
        }
        let line = line.trim_end();
        let names = match line.split_once(' ') {
            Some(("fds", names)) => names.split(' ').filter(|n| !n.is_empty()),
            Some(("error", reason)) => return Err(other(format!("{peer} refused: {reason}"))),
            _ => return Err(other(format!("unexpected answer from {peer}: {line:?}"))),
        };
        let names: Vec<String> = names.map(str::to_string).collect();
        if names.len() != fds.len() {
            return Err(other(format!(
                "{peer} named {} listeners but sent {} descriptors",
                names.len(),
                fds.len()
            )));
        }
        info!(
            "upgrade: took over the listener from {} ({peer})",
            path.display()
        );
        Ok(Takeover {
            stream,
            peer,
            fds: names.into_iter().zip(fds).collect(),
        })
    }

    /// The TCP listener handed over as `name`, if there was one, checked to be a
    /// listening socket.
    pub fn listener(&mut self, name: &str) -> io::Result<Option<std::net::TcpListener>> {
        let Some(i) = self.fds.iter().position(|(n, _)| n == name) else {
            return Ok(None);
        };
        let (_, fd) = self.fds.swap_remove(i);
        if !getsockopt(&fd, sockopt::AcceptConn)? {
            return Err(other(format!("the {name} descriptor is not listening")));
        }
        let listener = std::net::TcpListener::from(fd);
        // Fails for a socket that is not TCP over IP.
        listener.local_addr()?;
        Ok(Some(listener))
    }

    /// Tells the old process this one is accepting, and waits (briefly) for it to
    /// confirm that it stops.
    pub async fn serving(mut self) -> io::Result<()> {
        // Descriptors nobody took (a newer old process sent more): close them.
        self.fds.clear();
        self.stream.write_all(b"serving\n").await?;
        match prompt(read_line(&mut self.stream)).await? {
            line if line == "bye" => {
                info!("upgrade: {} stops accepting and drains", self.peer);
                Ok(())
            }
            line => Err(other(format!("unexpected {line:?} instead of bye"))),
        }
    }
}

/// The process at the other end of a Unix socket, as the kernel tells it.
#[derive(Debug, Clone, Copy)]
struct Peer(
    /// Its pid, for the logs, when the kernel can tell it.
    Option<i32>,
);

impl Peer {
    fn of(stream: &UnixStream) -> Peer {
        Peer(stream.peer_cred().ok().and_then(|c| c.pid()))
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "pid {pid}"),
            None => f.write_str("a process of unknown pid"),
        }
    }
}

/// `fut`, or a time-out error after `PROMPT`.
async fn prompt<T>(fut: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(PROMPT, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {PROMPT:?}"),
        )),
    }
}

/// One line, without its `\n`. Read byte by byte: nothing after it may be consumed,
/// as the next message may carry descriptors.
async fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    loop {
        match stream.read_u8().await? {
            b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            _ if line.len() >= MAX_LINE => return Err(other("line too long".into())),
            byte => line.push(byte),
        }
    }
}

/// Sends `line` with `fds` attached to its first byte.
async fn send_with_fds(stream: &mut UnixStream, line: String, fds: &[RawFd]) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let cmsg = [ControlMessage::ScmRights(fds)];
            let iov = [IoSlice::new(line.as_bytes())];
            Ok(sendmsg::<()>(
                fd,
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )?)
        })
        .await?;
    // The descriptors went with the first bytes; the rest of the line is plain data.
    stream.write_all(&line.as_bytes()[sent..]).await
}

/// Receives the start of a line and the descriptors attached to it (close-on-exec).
async fn recv_with_fds(stream: &UnixStream) -> io::Result<(String, Vec<OwnedFd>)> {
    let fd = stream.as_raw_fd();
    let mut buf = [0u8; MAX_LINE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = stream
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
            let mut fds = Vec::new();
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                    // SAFETY: the kernel has just installed these descriptors in this
                    // process for us alone; owning them closes them on every path.
                    fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
                }
            }
            Ok((msg.bytes, fds))
        })
        .await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without answering",
        ));
    }
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn a_listener_changes_hands_and_keeps_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let dup = tcp.as_fd().try_clone_to_owned().unwrap();
        let mut offer = Offer::listen(&path, vec![(PROXY, dup)]).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A client queued before the handover is accepted after it.
        let queued = std::net::TcpStream::connect(addr).unwrap();
        let old = tokio::spawn(async move {
            offer.handed_over().await;
            offer
        });
        let mut takeover = Takeover::connect(&path).await.unwrap();
        let taken = takeover.listener(PROXY).unwrap().unwrap();
        assert_eq!(takeover.listener("admin").unwrap().map(|_| ()), None);
        takeover.serving().await.unwrap();
        let offer = old.await.unwrap();
        drop((offer, tcp));
        // A handed-over offer leaves the socket file to its successor.
        assert!(path.exists());
        assert_eq!(taken.local_addr().unwrap(), addr);
        let (accepted, _) = taken.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), queued.local_addr().unwrap());
    }

    #[tokio::test]
    async fn an_offer_removes_its_file_and_refuses_to_replace_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock");
        let offer = Offer::listen(&path, Vec::new()).unwrap();
        // A stale socket file is replaced, and the older offer leaves the new file be.
        let newer = Offer::listen(&path, Vec::new()).unwrap();
        drop(offer);
        assert!(path.exists());
        drop(newer);
        assert!(!path.exists());
        fs::write(&path, "not a socket").unwrap();
        let err = Offer::listen(&path, Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
