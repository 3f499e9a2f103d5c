/* store.c: LMDB store (being written). */
typedef int gg_store_placeholder_t;
