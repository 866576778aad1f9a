//! The signed-in user's own account.

use std::sync::Arc;

use super::access::Principal;
use crate::api::ApiError;
use crate::store::{User, UserStore};

pub struct Accounts {
    users: Arc<dyn UserStore>,
}

impl Accounts {
    pub fn new(users: Arc<dyn UserStore>) -> Self {
        Self { users }
    }

    /// The account a verified token names.
    pub async fn current(&self, principal: &Principal) -> Result<User, ApiError> {
        self.users
            .find_by_id(principal.user_id)
            .await?
            .ok_or(ApiError::UserNotFound)
    }
}
