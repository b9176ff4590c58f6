-- Room on every page of deadlines for a new version of each of its rows (was 80, migration
-- 0007): a poll that changes a caseworker or an `updated_at` rewrites every deadline of the
-- case, and the cases of a day's changes, a reassigned caseworker's or a bulk update's, often
-- lie side by side on the same pages. With a fifth of a page free, three quarters of such
-- updates found no room on their page: each went to another page and wrote all seven indexes
-- (not HOT). With half of it free, every row of a page can take a new version there. Pages
-- written before this keep the room they had until the table is rewritten (VACUUM FULL).
ALTER TABLE deadlines SET (fillfactor = 50);
