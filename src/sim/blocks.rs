//! Archive blocks written out as the shell writes them to archive files,
//! but to memory: after every commit a simulated node's sealed blocks leave
//! its state for this store and are read back through the installed
//! reader, so every simulated test reads archives the way a node with a
//! data directory does. One store per thread, shared by the thread's
//! simulated nodes (each block gets its own file number).

use crate::model::block::{install_reader, BlockReader, Extent};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

#[derive(Default)]
pub struct MemBlocks {
    files: RefCell<HashMap<u32, Rc<[u8]>>>,
    next: Cell<u32>,
}

thread_local! {
    static STORE: Rc<MemBlocks> = Rc::new(MemBlocks::default());
}

/// This thread's store, installed as where archives read their blocks.
pub fn store() -> Rc<MemBlocks> {
    let store = STORE.with(Rc::clone);
    install_reader(Some(Rc::new(Reader(store.clone()))));
    store
}

impl MemBlocks {
    pub fn append(&self, bytes: &[u8]) -> io::Result<Extent> {
        let file = self.next.get() + 1;
        self.next.set(file);
        self.files.borrow_mut().insert(file, bytes.into());
        let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
        Ok(Extent {
            file,
            offset: 0,
            len,
        })
    }
}

struct Reader(Rc<MemBlocks>);

impl BlockReader for Reader {
    fn read(&self, at: Extent) -> io::Result<Vec<u8>> {
        let files = self.0.files.borrow();
        let bytes = files.get(&at.file).ok_or(io::ErrorKind::NotFound)?;
        let end = at.offset as usize + at.len as usize;
        let range = at.offset as usize..end;
        Ok(bytes
            .get(range)
            .ok_or(io::ErrorKind::UnexpectedEof)?
            .to_vec())
    }
}
