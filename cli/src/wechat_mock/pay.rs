//! The WeChat Pay APIv3 endpoints: prepay (native, JSAPI, H5), query, close, certificates, each
//! behind the `Authorization` check and answered signed with the platform key.

use std::sync::{atomic::Ordering, Arc};

use bytes::Bytes;
use ferrypay::{
    model::Timestamp,
    wechat::{signer::random_alphanumeric, EncryptedCertificate},
};
use http::{header, Method, StatusCode};
use serde_json::{json, Value};

use super::{Answer, MockOrder, SigningMode, WechatMock};

impl WechatMock {
    /// The APIv3 endpoints, after the checks WeChat Pay makes first: the signature, then any
    /// failure `POST /mock/fail` asked for.
    pub(super) async fn api(self: &Arc<Self>, req: &http::Request<Bytes>) -> Answer {
        let path = req.uri().path().to_string();
        // WeChat Pay checks the signature before anything else.
        let canonical = req
            .uri()
            .path_and_query()
            .map_or(path.clone(), |pq| pq.as_str().to_string());
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(err) = self.verifier.verify(
            authorization,
            req.method().as_str(),
            &canonical,
            req.body(),
            self.clock.now().unix(),
        ) {
            let mut response = http::Response::new(err.to_json().to_string());
            *response.status_mut() =
                StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return response;
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        // The call is carried out (or the failure made) first, then the delay: an answer lost
        // to a client's timeout leaves what the call did done.
        let (delay, answer) = match self.injected_failure(&path) {
            Some((delay, Some(failure))) => (delay, failure),
            Some((delay, None)) => (delay, self.route(req, &path)),
            None => (std::time::Duration::ZERO, self.route(req, &path)),
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        answer
    }

    /// The APIv3 endpoints by method and path.
    fn route(self: &Arc<Self>, req: &http::Request<Bytes>, path: &str) -> Answer {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method(), segments.as_slice()) {
            (&Method::POST, ["v3", "pay", "transactions", kind @ ("native" | "jsapi" | "h5")]) => {
                self.prepay(kind, req.body())
            }
            (&Method::GET, ["v3", "pay", "transactions", "out-trade-no", no]) => {
                let mchid = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("mchid="))
                    .unwrap_or_default();
                if mchid != self.config.mchid {
                    return self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid 错误");
                }
                self.query(no)
            }
            (&Method::POST, ["v3", "pay", "transactions", "out-trade-no", no, "close"]) => {
                self.close(no, req.body())
            }
            (&Method::GET, ["v3", "certificates"]) => self.certificates(),
            (&Method::POST, ["v3", "refund", "domestic", "refunds"]) => {
                self.create_refund(req.body())
            }
            (&Method::GET, ["v3", "refund", "domestic", "refunds", no]) => self.query_refund(no),
            _ => self.error(StatusCode::NOT_FOUND, "NOT_FOUND", "无效的请求"),
        }
    }

    /// API calls with a valid signature so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The mock's trade state of an order (`NOTPAY`, `SUCCESS`, `REFUND`, `CLOSED`), if it
    /// has it.
    pub fn trade_state(&self, out_trade_no: &str) -> Option<&'static str> {
        self.orders
            .lock()
            .ok()?
            .get(out_trade_no)
            .map(|o| o.trade_state)
    }

    /// `POST /v3/pay/transactions/{kind}`: a new NOTPAY order and its credential (`code_url`,
    /// `prepay_id` or `h5_url`); the same request again gets the same credential.
    fn prepay(&self, kind: &str, body: &[u8]) -> Answer {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "请求体不是合法的JSON",
            );
        };
        let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default();
        if text("mchid") != self.config.mchid || text("appid") != self.config.appid {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "appid和mch_id不匹配",
            );
        }
        let out_trade_no = text("out_trade_no").to_string();
        let amount = request["amount"]["total"].as_i64().unwrap_or(0);
        let description = text("description");
        let notify_url = text("notify_url").to_string();
        let shape_ok = (6..=32).contains(&out_trade_no.len())
            && out_trade_no
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_-|*".contains(&c))
            && amount > 0
            && !description.is_empty()
            && description.chars().count() <= 127
            && notify_url.starts_with("http");
        if !shape_ok {
            return self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
        }
        let openid = request["payer"]["openid"].as_str().map(str::to_string);
        if kind == "jsapi" && openid.is_none() {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "缺少参数 payer.openid",
            );
        }
        if kind == "h5" && request["scene_info"]["payer_client_ip"].as_str().is_none() {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "缺少参数 scene_info",
            );
        }
        let time_expire = request["time_expire"]
            .as_str()
            .map(Timestamp::parse_rfc3339);
        if time_expire == Some(None) {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "字符串必须是符合 RFC3339 日期时间格式",
            );
        }
        let Ok(mut orders) = self.orders.lock() else {
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            );
        };
        if let Some(existing) = orders.get(&out_trade_no) {
            if matches!(existing.trade_state, "SUCCESS" | "REFUND") {
                return self.error(StatusCode::FORBIDDEN, "ORDERPAID", "该订单已支付");
            }
            if existing.request != request || existing.kind != kind {
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "OUT_TRADE_NO_USED",
                    "商户订单号重复",
                );
            }
            let (name, value) = existing.credential.clone();
            return self.signed(StatusCode::OK, json!({ name: value }).to_string());
        }
        let n = self.next();
        let prepay_id = format!("wx{}{:010}", self.clock.now().to_beijing_compact(), n);
        let credential = match kind {
            "native" => ("code_url".to_string(), format!("weixin://wxpay/bizpayurl?pr=mock{n:08}")),
            "jsapi" => ("prepay_id".to_string(), prepay_id),
            _ => (
                "h5_url".to_string(),
                format!("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package=1"),
            ),
        };
        orders.insert(
            out_trade_no,
            MockOrder {
                kind: kind.to_string(),
                request: request.clone(),
                amount,
                notify_url,
                openid,
                credential: credential.clone(),
                trade_state: "NOTPAY",
                transaction_id: None,
                success_time: None,
                time_expire: time_expire.flatten(),
            },
        );
        let (name, value) = credential;
        self.signed(StatusCode::OK, json!({ name: value }).to_string())
    }

    /// The transaction as WeChat Pay reports it (query answers and notifications).
    pub(super) fn transaction_json(
        &self,
        no: &str,
        order: &MockOrder,
        reported_amount: i64,
    ) -> Value {
        let mut tx = json!({
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "out_trade_no": no,
            "trade_type": match order.kind.as_str() { "native" => "NATIVE", "jsapi" => "JSAPI", _ => "MWEB" },
            "trade_state": order.trade_state,
            "trade_state_desc": match order.trade_state { "SUCCESS" => "支付成功", "REFUND" => "转入退款", "CLOSED" => "订单已关闭", _ => "订单未支付" },
            "attach": "",
            "amount": {"total": reported_amount, "currency": "CNY"},
        });
        if let (Some(id), Some(time)) = (&order.transaction_id, order.success_time) {
            tx["transaction_id"] = json!(id);
            tx["success_time"] = json!(time.to_rfc3339_beijing());
            tx["bank_type"] = json!("OTHERS");
            tx["amount"]["payer_total"] = json!(reported_amount);
            tx["amount"]["payer_currency"] = json!("CNY");
            tx["payer"] = json!({"openid": order.openid.clone().unwrap_or_else(|| "oMockPayer0000000000000000000".into())});
        }
        tx
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}`.
    fn query(&self, no: &str) -> Answer {
        let order = self.orders.lock().ok().and_then(|o| o.get(no).cloned());
        match order {
            Some(order) => {
                let tx = self.transaction_json(no, &order, order.amount);
                self.signed(StatusCode::OK, tx.to_string())
            }
            None => self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
        }
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close`: CLOSED unless already paid.
    fn close(&self, no: &str, body: &[u8]) -> Answer {
        let mchid_ok = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["mchid"].as_str().map(|m| m == self.config.mchid))
            .unwrap_or(false);
        if !mchid_ok {
            return self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid 错误");
        }
        let Ok(mut orders) = self.orders.lock() else {
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            );
        };
        match orders.get_mut(no) {
            None => self.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
            Some(order) if matches!(order.trade_state, "SUCCESS" | "REFUND") => {
                self.error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付")
            }
            Some(order) => {
                order.trade_state = "CLOSED";
                self.signed(StatusCode::NO_CONTENT, String::new())
            }
        }
    }

    /// `GET /v3/certificates`: the platform certificate, encrypted (certificate mode only).
    fn certificates(&self) -> Answer {
        let SigningMode::Certificate { pem } = &self.config.signing else {
            return self.error(StatusCode::NOT_FOUND, "NOT_FOUND", "使用微信支付公钥验签");
        };
        let nonce = random_alphanumeric(12).unwrap_or_default();
        let now = self.clock.now();
        let encrypted = EncryptedCertificate::encrypt(
            &self.config.apiv3_key,
            &nonce,
            pem,
            &now.plus_secs(-86_400).to_rfc3339_beijing(),
            &now.plus_secs(5 * 365 * 86_400).to_rfc3339_beijing(),
        );
        match encrypted {
            Ok(encrypted) => {
                let body = json!({ "data": [encrypted] });
                self.signed(StatusCode::OK, body.to_string())
            }
            Err(_) => self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            ),
        }
    }
}
