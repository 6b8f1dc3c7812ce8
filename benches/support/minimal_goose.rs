//! The baseline of the load benchmark: the smallest goose load test that creates calls,
//! one fixed body, no signing, no contract checks. `scripts/bench-load` compares
//! `acs-harness load` with it. Takes goose's own options (`--host`, `-u`, `-t`, ...).

use goose::prelude::*;

const BODY: &str = r#"{"source":{"communicationUser":{"id":"8:acs:bench_1"}},"targets":[{"phoneNumber":{"value":"+14251001000"}}],"callbackUri":"https://example.com/cb","requestedModalities":["audio"],"requestedCallEvents":[]}"#;

async fn create_call(user: &mut GooseUser) -> TransactionResult {
    let request = user
        .get_request_builder(&GooseMethod::Post, "/calls")?
        .header("content-type", "application/json")
        .body(BODY);
    let goose = GooseRequest::builder()
        .method(GooseMethod::Post)
        .name("/calls")
        .set_request_builder(request)
        .build();
    let sent = user.request(goose).await?;
    // Read the answer, as any real test must to use the call id.
    if let Ok(response) = sent.response {
        let _ = response.bytes().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .register_scenario(scenario!("CreateCall").register_transaction(transaction!(create_call)))
        .execute()
        .await?;
    Ok(())
}
