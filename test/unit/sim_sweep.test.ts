/** The second half of the simulator's CI sweep (the first, and why it is split: sim.test.ts). */
import test from "ava";
import { CI_SEEDS, sweepTest } from "../helpers/sim_sweep.js";

sweepTest(test, CI_SEEDS / 2 + 1, CI_SEEDS);
