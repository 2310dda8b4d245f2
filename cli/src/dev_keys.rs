//! The public test keys the local stack and the WeChat Pay mock use by default. They come from
//! the official WeChat Pay SDKs' test suites (see `shared/tests/fixtures/wechatpay/README.md`):
//! never valid anywhere but in tests and on a developer's machine.

/// The merchant API private key (PKCS#8) ferrypay signs its requests with.
pub const MERCHANT_PRIVATE_KEY: &str =
    include_str!("../../shared/tests/fixtures/wechatpay/java_merchant_private_key.pem");
/// Its certificate serial.
pub const MERCHANT_SERIAL: &str = "5F1C72E2A8931B72A2E13AF8DEE92471EB397115";
/// Where the merchant key lives in the repository (for `WECHATPAY_PRIVATE_KEY_FILE`).
pub const MERCHANT_PRIVATE_KEY_PATH: &str =
    "shared/tests/fixtures/wechatpay/java_merchant_private_key.pem";

/// WeChat Pay's side: the platform key the mock signs with, as a bare public key and a
/// certificate.
pub const PLATFORM_PRIVATE_KEY: &str =
    include_str!("../../shared/tests/fixtures/wechatpay/java_wechat_pay_private_key.pem");
pub const PLATFORM_PUBLIC_KEY: &str =
    include_str!("../../shared/tests/fixtures/wechatpay/java_wechat_pay_public_key.pem");
pub const PLATFORM_PUBLIC_KEY_PATH: &str =
    "shared/tests/fixtures/wechatpay/java_wechat_pay_public_key.pem";
pub const PLATFORM_CERTIFICATE: &str =
    include_str!("../../shared/tests/fixtures/wechatpay/java_wechat_pay_certificate.pem");

/// A made-up WeChat Pay public key id for the mock's public-key mode.
pub const PLATFORM_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";
/// The APIv3 key of the Java SDK's test vectors (32 bytes).
pub const APIV3_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
/// The example merchant and app ids of WeChat Pay's documentation.
pub const MCHID: &str = "1900000109";
pub const APPID: &str = "wxd678efh567hg6787";

/// PUBLIC TEST VALUE, not a real secret: the official account AppSecret (OAuth secret) the
/// mock's `/sns/oauth2/access_token` accepts and the dev stack exchanges codes with. Made up
/// for ferrypay; valid nowhere but against the mock.
pub const OAUTH_SECRET: &str = "public-test-oauth-secret-0000000";
/// The openid the mock's OAuth gives the payer unless told otherwise (`POST /mock/oauth`).
pub const OAUTH_OPENID: &str = "oFerrypayDevPayer00000000000";
