//! The Settings dialog's commands: thin calls on the engine, which owns the
//! settings, their rules and what a change does.

use storycore_core::engine::Engine;
use storycore_types::{ApiError, AppSettings, ErrorCode, FieldError, GatewayStatus};
use tauri::State;

#[tauri::command]
pub fn get_settings(engine: State<'_, Engine>) -> AppSettings {
    engine.settings().get()
}

/// Checks, saves and applies new settings (see `Engine::apply_settings`).
#[tauri::command]
pub async fn set_settings(
    engine: State<'_, Engine>,
    settings: AppSettings,
) -> Result<(), ApiError> {
    engine.apply_settings(settings).await
}

/// Sets (`Some`) or removes (`None`) the token a gateway on the network
/// requires; kept in the OS keyring, never in a file.
#[tauri::command]
pub async fn set_gateway_token(
    engine: State<'_, Engine>,
    token: Option<String>,
) -> Result<(), ApiError> {
    engine.set_gateway_token(token).await
}

/// Where the gateway listens now (`None`: off, or it could not listen).
#[tauri::command]
pub async fn gateway_status(engine: State<'_, Engine>) -> Result<Option<GatewayStatus>, ApiError> {
    Ok(engine.gateway_status().await)
}

/// The people's gateway tokens (names and roles; never a token).
#[tauri::command]
pub async fn list_gateway_tokens(
    engine: State<'_, Engine>,
) -> Result<Vec<storycore_types::GatewayTokenInfo>, ApiError> {
    let dir = engine.paths().config_dir.clone();
    let all =
        tokio::task::spawn_blocking(move || storycore_core::gateway::TokenBook::open(&dir).list())
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(all
        .into_iter()
        .map(|t| storycore_types::GatewayTokenInfo {
            name: t.name,
            admin: t.admin,
            created_at: t.created_at,
        })
        .collect())
}

/// Makes a token for a person; answers it, the only time it is shown.
#[tauri::command]
pub async fn create_gateway_token(
    engine: State<'_, Engine>,
    name: String,
    admin: bool,
) -> Result<String, ApiError> {
    let dir = engine.paths().config_dir.clone();
    let made = tokio::task::spawn_blocking(move || {
        storycore_core::gateway::TokenBook::open(&dir).create(name.trim(), admin)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    made.map_err(token_error)
}

/// Revokes a person's token: refused from now on, its sockets closed.
#[tauri::command]
pub async fn revoke_gateway_token(engine: State<'_, Engine>, name: String) -> Result<(), ApiError> {
    let dir = engine.paths().config_dir.clone();
    let done = tokio::task::spawn_blocking(move || {
        storycore_core::gateway::TokenBook::open(&dir).revoke(&name)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    done.map_err(token_error)
}

fn token_error(e: storycore_core::gateway::TokenError) -> ApiError {
    use storycore_core::gateway::TokenError as T;
    let code = match &e {
        T::Invalid(_) => ErrorCode::InvalidInput,
        T::Unknown(_) => ErrorCode::NotFound,
        T::Taken(_) => ErrorCode::Conflict,
        _ => ErrorCode::Internal,
    };
    let mut api = ApiError::new(code, e.to_string());
    if code == ErrorCode::InvalidInput || code == ErrorCode::Conflict {
        api.fields = vec![FieldError::new("gateway.tokenName", e.to_string())];
    }
    api
}
