//! Pools for the window: list, create, change, delete.

use storycore_core::pool::Pools;
use storycore_types::{ApiError, PoolConfig, PoolView};
use tauri::State;

type Answer<T> = Result<T, ApiError>;

#[tauri::command]
pub fn list_pools(p: State<'_, Pools>) -> Vec<PoolView> {
    p.list()
}

/// Adds a pool; its minimum of members starts at once.
#[tauri::command]
pub async fn create_pool(p: State<'_, Pools>, config: PoolConfig) -> Answer<PoolView> {
    Ok(p.create(config).await?)
}

#[tauri::command]
pub async fn update_pool(p: State<'_, Pools>, config: PoolConfig) -> Answer<PoolView> {
    Ok(p.update(config).await?)
}

/// Stops and deletes the pool's members, then the pool.
#[tauri::command]
pub async fn delete_pool(p: State<'_, Pools>, id: String) -> Answer<()> {
    Ok(p.delete(&id).await?)
}
