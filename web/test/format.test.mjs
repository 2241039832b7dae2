// The words the console shows for the API's values (node --test; no browser needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventLevel, label, mib, vmStatus, word } from '../src/format.js';

test('enums read by proto name, with the string field as the fallback', () => {
  assert.equal(word('VM_STATUS_POWERING_UP', 'VM_STATUS_'), 'powering_up');
  assert.equal(word('VM_STATUS_UNSPECIFIED', 'VM_STATUS_', 'up'), 'up');
  assert.equal(word(undefined, 'VM_STATUS_', 'down'), 'down');
  assert.equal(vmStatus({ status_enum: 'VM_STATUS_MIGRATING', status: 'up' }), 'migrating');
  assert.equal(vmStatus({}), 'unknown');
  assert.equal(label('preparing_for_maintenance'), 'preparing for maintenance');
});

test('sizes as the CLI writes them', () => {
  assert.equal(mib(64), '64 MiB');
  assert.equal(mib(1024), '1 GiB');
  assert.equal(mib(1536), '1.5 GiB');
  assert.equal(mib(undefined), '0 MiB');
});

test('events are ranked by kind and words', () => {
  const e = (kind, message) => ({ kind_enum: `EVENT_KIND_${kind}`, message });
  assert.equal(eventLevel(e('VM_CREATED', 'VM web1 was created (64 MiB, 1 vCPU) by admin.')), 'info');
  assert.equal(eventLevel(e('VM_STATE_CHANGED', 'VM web1 is down on host host2.')), 'info');
  assert.equal(eventLevel(e('HOST_STATE_CHANGED', 'Host host2 is non_responsive.')), 'warning');
  assert.equal(eventLevel(e('VM_HIGH_AVAILABILITY', 'Highly Available VM web1 failed. It will be restarted automatically.')), 'error');
  assert.equal(eventLevel(e('LOGIN_FAILED', 'User alice did not log in.')), 'error');
});
