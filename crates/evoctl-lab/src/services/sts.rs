//! STS (AWS query protocol): GetCallerIdentity, answered in XML as AWS does.

use crate::state::Account;

/// The GetCallerIdentity XML document for the lab's user.
pub fn get_caller_identity(account: &Account, request_id: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  \
         <GetCallerIdentityResult>\n    <Arn>arn:aws:iam::{0}:user/evoctl-lab</Arn>\n    \
         <UserId>AIDALABEVOCTLUSER0001</UserId>\n    <Account>{0}</Account>\n  </GetCallerIdentityResult>\n  \
         <ResponseMetadata>\n    <RequestId>{1}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        account.account, request_id
    )
}

/// An error in the query protocol's XML shape.
pub fn error_xml(code: &str, message: &str, request_id: &str) -> String {
    let kind = if code.starts_with("Internal") { "Receiver" } else { "Sender" };
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    )
}
