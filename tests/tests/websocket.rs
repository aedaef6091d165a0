//! WebSocket through weir: the upgrade reaches the upstream and frames are
//! echoed both ways.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use weir_e2e::{LoadtestUpstream, Route, Weir, WeirConfig, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_are_echoed_through_weir() {
    let echo = LoadtestUpstream::start("echo", &[]);
    let weir = Weir::start(WeirConfig::new([Route::new("ws", &[echo.addr])])).await;

    within(Duration::from_secs(20), "the websocket exchange", async {
        let (mut ws, response) =
            tokio_tungstenite::connect_async(format!("ws://{}/chat", weir.addrs.http))
                .await
                .expect("websocket handshake through weir");
        assert_eq!(response.status(), 101);
        for i in 0..20 {
            let text = format!("hello {i}");
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
        }
        let big = vec![0xA5u8; 200_000];
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
        ws.close(None).await.unwrap();
    })
    .await;
    assert_eq!(echo.stats().await["websockets"], 1);
}
