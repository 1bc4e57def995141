//! A task whose service uses an external Evolution server gets a loopback port of its own that
//! forwards every connection to that server (`tokio::io::copy_bidirectional`), so a command in
//! the task reaches it at `127.0.0.1:$SERVER_PORT`, as it would reach the container's own server.

/// Listen on a free loopback port and forward each connection to `address` (`HOST:PORT`).
pub fn start(address: String) -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                // Out of descriptors, say: try again shortly rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let address = address.clone();
            tokio::spawn(async move {
                match tokio::net::TcpStream::connect(&address).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(err) => tracing::debug!(%err, %address, "the external Evolution refused the connection"),
                }
            });
        }
    });
    Ok((port, task))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_go_both_ways() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = upstream.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            let mut buffer = [0u8; 4];
            socket.read_exact(&mut buffer).await.unwrap();
            socket.write_all(&buffer.map(|b| b.to_ascii_uppercase())).await.unwrap();
        });
        let (port, _task) = super::start(address).unwrap();
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"PING");
    }
}
