// A storage backend for fault tests: fd underneath, counting writes and syncs and failing them
// on request with EIO, as a failing disk does.

import type { StorageBackend, StorageFile } from '../../src/contracts/storage.js';
import { FdBackend } from '../../src/engine/storage/fd.js';

/**
 * fd underneath, counting writes and syncs and failing them on request. With `link`, its files
 * also offer writevAndSync (a write and the sync that covers it handed over together, as io_uring
 * does), counted in `linked` and failing with the syncs.
 */
export class FaultyBackend implements StorageBackend {
  readonly name = 'faulty';
  syncs = 0;
  writes = 0;
  linked = 0;
  failWrites = false;
  failSyncs = false;
  /** While set, every sync waits for it (a slow disk); failSyncs is read when the sync goes on. */
  holdSyncs: Promise<void> | undefined;
  private readonly inner = new FdBackend();
  private readonly link: boolean;

  constructor(options: { readonly link?: boolean } = {}) {
    this.link = options.link ?? false;
  }

  open(path: string, options: { readonly create: boolean }): StorageFile {
    const file = this.inner.open(path, options);
    const backend = this;
    return {
      path: file.path,
      write(buffer, position, offset, length) {
        backend.writes += 1;
        if (backend.failWrites) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        file.write(buffer, position, offset, length);
      },
      writev(buffers, position) {
        backend.writes += 1;
        if (backend.failWrites) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        file.writev(buffers, position);
      },
      read: (buffer, offset, length, position) => file.read(buffer, offset, length, position),
      size: () => file.size(),
      truncate: (bytes) => file.truncate(bytes),
      async sync() {
        backend.syncs += 1;
        if (backend.holdSyncs !== undefined) await backend.holdSyncs;
        if (backend.failSyncs) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        await file.sync();
      },
      ...(backend.link
        ? {
            async writevAndSync(buffers: readonly Uint8Array[], position: number) {
              backend.writes += 1;
              if (backend.failWrites) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
              file.writev(buffers, position);
              backend.linked += 1;
              if (backend.failSyncs) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
              await file.sync();
            },
          }
        : {}),
      close: () => file.close(),
    };
  }
}
