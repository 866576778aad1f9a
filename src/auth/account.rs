//! The signed-in user's own account: read it, or delete it with everything
//! that hangs off it.

use std::sync::Arc;

use super::access::Principal;
use super::delivery::OtpDelivery;
use super::session::Sessions;
use crate::api::ApiError;
use crate::audit::Audit;
use crate::context::RequestContext;
use crate::mobile::masked;
use crate::store::{User, UserStore};

pub struct Accounts {
    users: Arc<dyn UserStore>,
    sessions: Arc<Sessions>,
    delivery: Arc<OtpDelivery>,
    audit: Arc<Audit>,
}

impl Accounts {
    pub fn new(
        users: Arc<dyn UserStore>,
        sessions: Arc<Sessions>,
        delivery: Arc<OtpDelivery>,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            users,
            sessions,
            delivery,
            audit,
        }
    }

    /// The account a verified token names.
    pub async fn current(&self, principal: &Principal) -> Result<User, ApiError> {
        self.users
            .find_by_id(principal.user_id)
            .await?
            .ok_or(ApiError::UserNotFound)
    }

    /// Deletes the caller's account: its sessions are revoked first (so its
    /// tokens stop working everywhere), then the account and its OTP state
    /// go, and its mobile and email are free again.
    pub async fn delete(
        &self,
        ctx: &RequestContext,
        principal: &Principal,
    ) -> Result<(), ApiError> {
        let user = self.current(principal).await?;
        self.sessions.end_all(ctx, user.id).await?;
        self.users.delete(user.id).await?;
        self.delivery.forget(&user.mobile).await?;
        tracing::info!(request_id = ctx.request_id(), user_id = user.id, mobile = %masked(&user.mobile), "account deleted");
        self.audit
            .event("account_deleted", ctx)
            .user(user.id)
            .mobile(&user.mobile)
            .emit();
        Ok(())
    }
}
