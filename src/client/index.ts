/**
 * The package's public API: `import { connect } from "redis-qjm"`. Everything else in the package is internal.
 *
 *   const qjm = await connect();                       // $QJM_NATS_URL, $QJM_CLUSTER, <QJM_DATA_DIR>/credentials/client.creds
 *   const { txid, reply } = await qjm.write("INCR", "visits");
 *   const { reply: all } = await qjm.transaction([["SET", "a", "1"], ["INCR", "a"]]);   // one record: ["OK", 2]
 *   await qjm.close();
 *   // A TLS bus (`npm start --tls`): connect({ tls: { caFile, certFile, keyFile } }), or $QJM_TLS=1.
 */
export { connect, newClientId, QjmClientError } from "./client.js";
export type { ClientErrorCode, ConnectOptions, OrderedWriter, QjmClient, Reply, TxWatch, TypedReply, WriteArg, WriteResult } from "./client.js";
export { ErrorCode } from "../protocol/errors.js";
export type { ActorStatus, WriteId } from "../protocol/messages.js";
export type { NatsTls } from "../nats/tls.js";
