//! The engine on its own thread behind an `EngineHandle`: requests from other threads,
//! and a clean stop when the last handle goes.

mod harness;

use std::sync::mpsc;
use std::time::Duration;

use harness::*;
use looptree_engine::sampling::SamplingParams;
use looptree_engine::{EngineHandle, Event};

#[test]
fn handle_runs_requests_from_other_threads_and_stops_when_dropped() {
    let (e, _) = engine(config(1024, 2));
    let handle = std::sync::Arc::new(EngineHandle::spawn(e));
    let p = prompt(8, 10);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(12)
    };
    let (tx, rx) = mpsc::channel::<Event>();
    let h = handle.clone();
    let (p2, params2) = (p.clone(), params.clone());
    std::thread::spawn(move || h.submit(req(&p2, params2), Box::new(tx)).unwrap())
        .join()
        .unwrap();
    let mut tokens = Vec::new();
    loop {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("events arrive")
        {
            Event::Token { token, .. } => tokens.push(token),
            Event::Finished { .. } => break,
            Event::Prefilled { .. } => {}
            Event::Failed { message, .. } => panic!("{message}"),
        }
    }
    assert_eq!(tokens, reference(&p, &params));

    // Cancel through the handle. The sink holds the engine thread at Prefilled until
    // the cancel is queued, so the request cannot run to its end first.
    let (tx, rx) = mpsc::channel::<Event>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let sink = move |ev: Event| {
        let prefilled = matches!(ev, Event::Prefilled { .. });
        let ok = tx.send(ev).is_ok();
        if prefilled {
            go_rx.recv().unwrap();
        }
        ok
    };
    let id = handle
        .submit(
            req(
                &p,
                SamplingParams {
                    ignore_eos: true,
                    ..greedy(400)
                },
            ),
            Box::new(sink),
        )
        .unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        Event::Prefilled { .. }
    ));
    handle.cancel(id);
    go_tx.send(()).unwrap();
    let mut n = 0;
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(20)) {
        assert!(matches!(ev, Event::Token { .. }), "{ev:?}");
        n += 1;
    }
    assert!(n <= 1, "{n} tokens after the cancel");
    assert_eq!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected),
        "the engine dropped the cancelled request's sink"
    );
    // The gauges are written at the end of the step that dropped the sink.
    let t0 = std::time::Instant::now();
    while handle.counters().snapshot().running != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the cancelled request still runs"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // Dropping the handle stops the engine thread (drop joins it).
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(
            std::sync::Arc::try_unwrap(handle)
                .ok()
                .expect("only handle"),
        );
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the engine thread did not stop");
}
