import test from "ava";
import { errors } from "@nats-io/transport-node";
import { isBusConnectionFault } from "../../src/nats/bus.js";
import { ErrorCode, QjmError } from "../../src/protocol/errors.js";
import { AssertionError } from "../../src/util/assert.js";

test("bus - only the NATS client's own connection faults are taken for one; our errors and assertions never are", (t) => {
  t.true(isBusConnectionFault(new errors.TimeoutError()));
  t.true(isBusConnectionFault(new errors.ConnectionError("connection refused")));
  t.false(isBusConnectionFault(new AssertionError("invariant")));
  t.false(isBusConnectionFault(new QjmError(ErrorCode.TIMEOUT, "a request of ours timed out")));
  t.false(isBusConnectionFault(new Error("timeout")));
  t.false(isBusConnectionFault(new errors.PermissionViolationError("denied", "publish", "qjm.x")));
});
