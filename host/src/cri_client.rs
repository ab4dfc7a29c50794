//! kubelet's side of CRI: a gRPC channel (tonic) to containerd's CRI plugin
//! over its Unix socket, for `cloister bench pods` and the tests.
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects to the CRI server on `sock`.
pub async fn channel(sock: PathBuf) -> Result<Channel, tonic::transport::Error> {
    // The URI is a placeholder: the connector dials the Unix socket.
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
}

/// The runtime and image services on one channel.
pub fn clients(ch: Channel) -> (RuntimeServiceClient<Channel>, ImageServiceClient<Channel>) {
    (
        RuntimeServiceClient::new(ch.clone()),
        ImageServiceClient::new(ch),
    )
}
