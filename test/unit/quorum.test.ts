import test from "ava";
import { firstSuccesses } from "../../src/util/quorum.js";

/** A promise settled by hand. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

test("firstSuccesses - a majority in, the silent node is not waited for (issue #13 P6: a SIGSTOPped journal node)", async (t) => {
  const [a, b, c] = [deferred<string | null>(), deferred<string | null>(), deferred<string | null>()];
  const got = firstSuccesses([a.promise, b.promise, c.promise], 2);
  b.resolve("jn2");
  a.resolve("jn1");
  t.deepEqual(await got, ["jn2", "jn1"], "c never settles");
});

test("firstSuccesses - failures and rejections count as settled: fewer than wanted once all are in", async (t) => {
  const [a, b, c] = [deferred<string | null>(), deferred<string | null>(), deferred<string | null>()];
  const got = firstSuccesses([a.promise, b.promise, c.promise], 2);
  a.resolve(null);
  b.reject(new Error("timeout"));
  c.resolve("jn3");
  t.deepEqual(await got, ["jn3"]);
  t.deepEqual(await firstSuccesses([], 2), [], "nothing to wait for");
  t.deepEqual(await firstSuccesses([Promise.resolve("x")], 0), [], "none wanted");
});
