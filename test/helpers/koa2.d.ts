// Koa 2 is installed under the alias "koa2" so both majors are tested; @types/koa
// describes the API used here for both.
declare module 'koa2' {
  import Koa from 'koa';
  export default Koa;
}
